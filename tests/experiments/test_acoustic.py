"""Per-clip acoustic measures and the Fig 8 with / without-adjective comparison."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from and_toolkit.experiments.acoustic import (
    AcousticConfig,
    acoustic_groups,
    acoustics_frame,
    clip_acoustics,
    neuron_acoustics,
)
from and_toolkit.records import ConceptSet, Extremes, ResultRow

SR = 16000


def tone(freq: float, amp: float = 0.5, seconds: float = 1.0, dc: float = 0.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return amp * np.sin(2 * np.pi * freq * t) + dc


@pytest.mark.parametrize("freq", [440.0, 1234.5, 5000.0])
def test_mdf_of_a_pure_tone_is_its_frequency_within_one_bin(freq: float) -> None:
    m = clip_acoustics(tone(freq, seconds=0.5), SR)  # bin width 2 Hz
    assert abs(m.mdf_hz - freq) <= SR / (SR * 0.5)


def test_amplitude_and_rms_of_a_sine() -> None:
    m = clip_acoustics(tone(997.3, amp=0.5), SR)  # not commensurate with the sample grid
    assert m.amplitude == pytest.approx(2 * 0.5 / math.pi, rel=1e-3)  # mean |A sin| = 2A/π
    assert m.rms_db == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=1e-3)


def test_dc_offset_is_removed_before_the_spectrum() -> None:
    x = tone(2000.0, amp=0.1, dc=0.5)
    assert abs(clip_acoustics(x, SR).mdf_hz - 2000.0) <= 1.0
    assert clip_acoustics(x, SR, remove_dc=False).mdf_hz == 0.0


def test_silence_and_bad_input() -> None:
    assert tuple(clip_acoustics(np.zeros(100), SR)) == (0.0, -120.0, 0.0)
    with pytest.raises(ValueError, match="1-D"):
        clip_acoustics(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError, match="NaN"):
        clip_acoustics(np.array([0.0, np.nan]), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        clip_acoustics(np.zeros(10), 0)


def test_acoustics_frame_rows() -> None:
    df = acoustics_frame([("a", tone(500.0), SR), ("b", np.zeros(10), SR)])
    assert df["clip_id"].to_list() == ["a", "b"]
    assert df.columns == ["clip_id", "amplitude", "rms_db", "mdf_hz"]


def fixture(n: int = 6) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """2n neurons with 2 top clips each: 'loud' neurons' clips have amplitude 0.5 + i/100,
    the others 0.1 + i/100 (complete separation); 'high-pitched' = the even-indexed ones."""
    ex, concepts, clips = [], [], []
    for i in range(2 * n):
        loud = i < n
        ids = [f"n{i}a", f"n{i}b"]
        ex.append({"model": "toy", "layer": "l", "unit": i, "side": "high", "k": 2,
                   "clip_ids": ids, "values": [2.0, 1.0]})
        for j, cid in enumerate(ids):
            amp = (0.5 if loud else 0.1) + i / 100 + j / 1000
            clips.append((cid, amp, 20 * math.log10(amp), 1000.0 + 100 * i))
        words = (["loud"] if loud else []) + (["high-pitched"] if i % 2 == 0 else [])
        concepts += [{"model": "toy", "layer": "l", "unit": i, "method": "OCP",
                      "similarity": "", "concept": w, "kind": "open", "rank": r, "score": None,
                      "pos": "ADJ", "verdict": "kept"} for r, w in enumerate(words)]
    measures = pl.DataFrame(clips, schema=["clip_id", "amplitude", "rms_db", "mdf_hz"],
                            orient="row")
    return Extremes.frame(ex), ConceptSet.frame(concepts), measures


def test_neuron_acoustics_average_the_top_clips() -> None:
    ex, _, measures = fixture()
    per = neuron_acoustics(ex, measures)
    assert per.filter(pl.col("unit") == 0)["amplitude"][0] == pytest.approx(0.5005)
    assert per.filter(pl.col("unit") == 11)["mdf_hz"][0] == 2100.0
    with pytest.raises(ValueError, match="no measures"):
        neuron_acoustics(ex, measures.filter(pl.col("clip_id") != "n3b"))


def test_mann_whitney_direction_and_exact_p() -> None:
    ex, concepts, measures = fixture(6)
    rows, per = acoustic_groups(ex, concepts, measures, AcousticConfig(paper_model={"toy": "AST"}))
    ResultRow.validate_frame(rows)

    def val(key: str) -> float:
        return rows.filter(pl.col("key") == key)["value"][0]

    assert val("toy/loud/amplitude/n_with") == 6.0
    assert val("toy/loud/amplitude/n_without") == 6.0
    assert rows.filter(pl.col("key") == "toy/loud/mdf_hz/n_with")["paper_value"][0] == 22612.0
    assert val("toy/loud/amplitude/auc") == 1.0  # every loud neuron is louder
    assert val("toy/loud/amplitude/median_with") > val("toy/loud/amplitude/median_without")
    # complete separation of 6 vs 6: exact two-sided p = 2 / C(12, 6)
    assert val("toy/loud/amplitude/p_value") == pytest.approx(2 / math.comb(12, 6))
    # 'high-pitched' (even units) vs odd: mdf 1000+100i -> lower for the 'with' group on
    # average? evens 0..10 mean 1500, odds 1..11 mean 1600 -> auc < 0.5
    assert val("toy/high-pitched/mdf_hz/auc") < 0.5
    greater = acoustic_groups(ex, concepts, measures, AcousticConfig(alternative="greater"))[0]
    p_greater = greater.filter(pl.col("key") == "toy/loud/amplitude/p_value")["value"][0]
    assert p_greater == pytest.approx(1 / math.comb(12, 6))
    assert per.filter(pl.col("unit") == 0)["words"][0].to_list() == ["high-pitched", "loud"]
    assert per.filter(pl.col("unit") == 11)["words"][0].to_list() == []
    # distribution rows: one per neuron and figure pair, with / without the word
    dist = rows.filter(pl.col("x").is_not_null())
    assert dist.height == 3 * 12
    loud = dist.filter((pl.col("group") == "loud") & (pl.col("metric") == "amplitude"))
    assert loud.group_by("series").len().sort("series").rows() == [("with", 6), ("without", 6)]
    row = loud.filter(pl.col("key") == "toy/loud/amplitude/l#0")
    assert row["series"][0] == "with" and row["value"][0] == pytest.approx(0.5005)


def test_empty_group_is_not_computable() -> None:
    ex, concepts, measures = fixture(2)
    rows, _ = acoustic_groups(ex, concepts.filter(pl.col("concept") != "loud"), measures,
                              AcousticConfig())
    p = rows.filter(pl.col("key") == "toy/loud/amplitude/p_value")
    assert p["value"][0] is None and p["note"][0].startswith("not computable")


def test_adjective_source_ends_every_summary_note() -> None:
    ex, concepts, measures = fixture(2)
    src = "sanity check of the descriptor captioner, not a finding"
    rows, _ = acoustic_groups(ex, concepts.filter(pl.col("concept") != "loud"), measures,
                              AcousticConfig(adjective_source=src))
    summary, dist = rows.filter(pl.col("x").is_null()), rows.filter(pl.col("x").is_not_null())
    assert summary["note"].str.ends_with(src).all()
    # an existing note keeps its place (a "not computable" note still starts the note)
    p = summary.filter(pl.col("key") == "toy/loud/amplitude/p_value")["note"][0]
    assert p.startswith("not computable") and p.endswith(src)
    assert not dist["note"].str.contains(src).any()
