"""Top-K / bottom-K: signed values, deterministic ties, K > N, matrix and frame inputs."""

from __future__ import annotations

import numpy as np
import pytest

from and_toolkit.recording.extremes import extremes, top_bottom_indices
from and_toolkit.recording.record import activation_frame
from and_toolkit.records import ActivationTable, Extremes

IDS = ["d", "c", "b", "a", "e"]
# columns = units; unit 0 has ties at 1.0 and a -0.0/0.0 tie; unit 1 is negative-heavy
VALUES = np.array([
    [1.0, -2.0],
    [3.0, -2.0],
    [1.0, 5.0],
    [-0.0, -7.5],
    [0.0, -2.0],
], dtype=np.float32)


def _rows(df: object) -> dict[tuple[int, str], tuple[list[str], list[float]]]:
    import polars as pl

    assert isinstance(df, pl.DataFrame)
    return {(r["unit"], r["side"]): (r["clip_ids"], r["values"])
            for r in df.iter_rows(named=True)}


def test_hand_made_ties_and_negatives() -> None:
    df = extremes(VALUES, IDS, 3, model="m", layer="l")
    Extremes.validate_frame(df, require_rows=True)
    rows = _rows(df)
    assert rows[(0, "high")] == (["c", "b", "d"], [3.0, 1.0, 1.0])  # tie 1.0: b before d
    assert rows[(0, "low")] == (["a", "e", "b"], [0.0, 0.0, 1.0])  # -0.0 == 0.0: a before e
    assert rows[(1, "high")] == (["b", "c", "d"], [5.0, -2.0, -2.0])
    assert rows[(1, "low")] == (["a", "c", "d"], [-7.5, -2.0, -2.0])  # signed, not |x|
    assert df["side"].to_list() == ["high", "low", "high", "low"]
    assert set(df["k"]) == {3} and set(df["model"]) == {"m"}


def test_k_equal_n_is_full_ranking() -> None:
    rows = _rows(extremes(VALUES, IDS, 5, model="m", layer="l"))
    assert rows[(1, "high")][0] == ["b", "c", "d", "e", "a"]
    assert rows[(1, "low")][0] == ["a", "c", "d", "e", "b"]


def test_k_larger_than_n_names_k_and_n() -> None:
    with pytest.raises(ValueError, match=r"K=6.*N=5"):
        extremes(VALUES, IDS, 6, model="m", layer="l")
    with pytest.raises(ValueError, match=r"K=0"):
        extremes(VALUES, IDS, 0, model="m", layer="l")


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="clip_ids: 4 ids for N=5"):
        extremes(VALUES, IDS[:4], 2, model="m", layer="l")
    with pytest.raises(ValueError, match="'a' appears more than once"):
        extremes(VALUES, ["a", "b", "c", "a", "e"], 2, model="m", layer="l")
    with pytest.raises(ValueError, match="model, layer"):
        extremes(VALUES, IDS, 2)
    bad = VALUES.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match=r"non-finite.*\[1\]"):
        extremes(bad, IDS, 2, model="m", layer="l")


def test_frame_input_matches_matrix_input() -> None:
    frame = activation_frame(VALUES, model_id="m", layer="l", alias="l", block=None,
                             pooling="none", probe_sha256="x")
    ActivationTable.validate_frame(frame)
    assert extremes(frame, IDS, 2).equals(extremes(VALUES, IDS, 2, model="m", layer="l"))
    units = extremes(VALUES, IDS, 2, model="m", layer="l", units=[7, 9])
    assert units["unit"].to_list() == [7, 7, 9, 9]


@pytest.mark.parametrize("k", [5, 10, 20])
def test_matches_brute_force_with_many_ties(k: int) -> None:
    rng = np.random.default_rng(0)
    n_clips, n_units = 40, 30
    vals = rng.integers(-3, 4, size=(n_clips, n_units)).astype(np.float32)  # heavy ties
    ids = [f"clip{int(i):03d}" for i in rng.permutation(n_clips)]
    high, low = top_bottom_indices(vals.T, ids, k, chunk=7)
    for u in range(n_units):
        desc = sorted(range(n_clips), key=lambda i: (-vals[i, u], ids[i]))[:k]
        asc = sorted(range(n_clips), key=lambda i: (vals[i, u], ids[i]))[:k]
        assert high[u].tolist() == desc
        assert low[u].tolist() == asc


def test_empty_frame() -> None:
    empty = ActivationTable.empty(width=5)
    assert extremes(empty, IDS, 2).height == 0
