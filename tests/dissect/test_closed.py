"""Module A closed concepts: evidence matrices, ranking, compat mode, ConceptSet rows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pytest
import torch

from and_toolkit.dissect import closed as C
from and_toolkit.dissect import similarity as S
from and_toolkit.dissect import similarity_reference as R
from and_toolkit.errors import RecordValidationError
from and_toolkit.records import ConceptSet


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def embeddings(n: int, m: int, d: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)


def layer(seed: int = 0, n_clips: int = 200, m: int = 7, n: int = 30
          ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    caps, cons = embeddings(n_clips, m, seed=seed)
    P = C.db_evidence(caps, cons)
    g = torch.Generator().manual_seed(seed + 1)
    U = torch.randn(n_clips, n, generator=g) + 4 * P @ torch.randn(m, n, generator=g)
    return P, U, [f"concept_{i}" for i in range(m)]


# ----- evidence -------------------------------------------------------------------------------
def test_db_softmax_rows_sum_to_one() -> None:
    P = C.db_evidence(*embeddings(50, 9))
    assert P.shape == (50, 9) and P.dtype == torch.float32
    torch.testing.assert_close(P.sum(dim=1), torch.ones(50))
    assert bool((P >= 0).all())


def test_db_cosine_mode_and_tab_are_raw_cosine() -> None:
    caps, cons = embeddings(20, 4)
    unit = torch.nn.functional.normalize
    manual = unit(caps, dim=1) @ unit(cons, dim=1).T
    torch.testing.assert_close(C.db_evidence(caps, cons, mode="cosine"), manual)
    torch.testing.assert_close(C.tab_evidence(caps.numpy(), cons.numpy()), manual)
    # softmax100 = softmax over concepts of 100 x cosine (the authors' DB)
    torch.testing.assert_close(C.db_evidence(caps, cons), torch.softmax(100 * manual, dim=1))


def test_evidence_rejects_bad_embeddings() -> None:
    caps, cons = embeddings(20, 4)
    zero = caps.clone()
    zero[3] = 0
    with pytest.raises(ValueError, match="caption_emb: row 3"):
        C.db_evidence(zero, cons)
    with pytest.raises(ValueError, match="audio_emb: row 3"):
        C.tab_evidence(zero, cons)
    with pytest.raises(ValueError, match="width"):
        C.db_evidence(caps, cons[:, :8])
    with pytest.raises(ValueError, match="mode"):
        C.db_evidence(caps, cons, mode="softmax")  # type: ignore[arg-type]


# ----- text -----------------------------------------------------------------------------------
def test_distinct_texts_first_occurrence_order_and_inverse() -> None:
    texts = ["a dog barks", "rain", "a dog barks", "", "rain", "Rain"]
    unique, inverse = C.distinct_texts(texts)
    assert unique == ["a dog barks", "rain", "", "Rain"]
    assert inverse.tolist() == [0, 1, 0, 2, 1, 3] and inverse.dtype == np.int64
    assert [unique[i] for i in inverse] == texts
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        C.distinct_texts(["a", None])  # type: ignore[list-item]


def test_encode_distinct_encodes_each_text_once() -> None:
    calls: list[list[str]] = []

    def encode(batch: list[str]) -> np.ndarray:
        calls.append(batch)
        return np.array([[len(t), t.count("a")] for t in batch], dtype=np.float32)

    texts = ["a cat", "a dog", "a cat", "a cat", "bird"]
    emb, n_encoded = C.encode_distinct(texts, encode)
    assert n_encoded == 3 and calls == [["a cat", "a dog", "bird"]]
    assert emb.tolist() == [[5, 2], [5, 1], [5, 2], [5, 2], [4, 0]]
    with pytest.raises(ValueError, match="encode"):
        C.encode_distinct(texts, lambda batch: np.zeros((1, 2)))


# ----- ranking --------------------------------------------------------------------------------
def test_rank_concepts_ties_lower_index_first_and_nan_last() -> None:
    scores = torch.tensor([[0.5, 0.75, 0.5, float("nan"), 0.75],
                           [float("nan"), -1.0, float("-inf"), -1.0, 0.0]])
    idx, top = C.rank_concepts(scores, list("abcde"), 5)
    assert idx.tolist() == [[1, 4, 0, 2, 3], [4, 1, 3, 0, 2]]
    assert top[0, :4].tolist() == [0.75, 0.75, 0.5, 0.5] and bool(top[0, 4].isnan())
    idx2, _ = C.rank_concepts(scores, list("abcde"), 2)
    assert torch.equal(idx2, idx[:, :2])


def test_rank_concepts_validates() -> None:
    scores = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="concepts has 2 names"):
        C.rank_concepts(scores, ["a", "b"], 1)
    with pytest.raises(ValueError, match="k must be"):
        C.rank_concepts(scores, ["a", "b", "c"], 4)


# ----- Module A -------------------------------------------------------------------------------
def test_closed_concepts_runs_all_five_with_shapes() -> None:
    P, U, concepts = layer()
    out = C.closed_concepts(P, U, concepts, C.ClosedConfig(k=3))
    assert list(out) == list(S.SIMILARITY_NAMES)
    for idx, scores in out.values():
        assert idx.shape == (30, 3) and scores.shape == (30, 3)
        assert bool((scores[:, :-1] >= scores[:, 1:]).all())  # best first
    with pytest.raises(ValueError, match="concepts were given"):
        C.closed_concepts(P, U, concepts[:-1])


def test_closed_concepts_known_answer_tab() -> None:
    # TAB: raw cosine evidence; a neuron equal to a concept column gets it top-1 everywhere
    caps, cons = embeddings(300, 6, seed=5)
    P = C.tab_evidence(caps, cons)
    out = C.closed_concepts(P, P.clone(), [f"c{i}" for i in range(6)], C.ClosedConfig(k=1))
    for name, (idx, _) in out.items():
        assert idx[:, 0].tolist() == list(range(6)), name


def test_db_reference_fc_soft_wpmi_predicts_first_concepts() -> None:
    # per-neuron population: soft-WPMI is 0 everywhere, so top-5 = concepts 0..4 for every
    # neuron (the 2 % / 10 % rows of the paper's Table 7)
    P, U, concepts = layer()
    out = C.closed_concepts(P, U, concepts, C.ClosedConfig(population="per_neuron"))
    idx, scores = out["soft_wpmi"]
    assert bool((idx == torch.arange(5)).all()) and bool((scores == 0).all())


def test_db_hidden_topk_only_matches_per_neuron_calls() -> None:
    P, U, concepts = layer(n=12)
    cfg = C.ClosedConfig(db_hidden_topk_only=True, population="per_neuron", chunk_size=5)
    out = C.db_hidden_topk_only(P, U, cfg)
    assert bool(out["rank_reorder"].isnan().all())  # int(5 * 0.05) = 0 top clips
    assert torch.equal(out["soft_wpmi"], torch.zeros(12, 7))
    for j in range(12):  # the authors call each function on one neuron's 5 top clips
        top = torch.sort(U[:, j], descending=True, stable=True).indices[:5]
        p_n, u_n = P[top], U[top, j : j + 1]
        torch.testing.assert_close(out["cos"][j], R.cos_loop(p_n, u_n)[0])
        torch.testing.assert_close(out["cos_cubed"][j], R.cos_cubed_loop(p_n, u_n)[0])
        wpmi_n = R.wpmi_loop(p_n, u_n, population="per_neuron")[0]
        torch.testing.assert_close(out["wpmi"][j], wpmi_n)
    ranked = C.closed_concepts(P, U, concepts, cfg)
    assert torch.equal(ranked["cos"][0], C.rank_concepts(out["cos"], concepts, 5)[0])


def test_db_hidden_topk_only_rejects_too_few_clips() -> None:
    P, U, _ = layer(n_clips=4)
    with pytest.raises(ValueError, match="db_hidden_clips"):
        C.db_hidden_topk_only(P, U)


# ----- ConceptSet rows ------------------------------------------------------------------------
def test_concept_set_frame_equals_record_frame_of_rows() -> None:
    P, U, concepts = layer(n=4)
    scores = S.rank_reorder(P, U)
    scores[1] = float("nan")
    idx, top = C.rank_concepts(scores, concepts, 3)
    units = [10, 11, 12, 13]
    df = C.concept_set_frame("ast", "layers.3.mlp.fc1", units, "TAB", "rank_reorder", idx, top,
                             concepts)
    rows = [
        {"model": "ast", "layer": "layers.3.mlp.fc1", "unit": units[i], "method": "TAB",
         "similarity": "rank_reorder", "concept": concepts[int(idx[i, r])], "kind": "closed",
         "rank": r, "score": float(top[i, r]), "pos": None, "verdict": "kept"}
        for i in range(4) for r in range(3)
    ]
    assert df.equals(ConceptSet.frame(rows))
    assert df.schema == ConceptSet.polars_schema()
    assert df.height == 12 and df["score"].is_nan().sum() == 3
    best = df.filter(pl.col("rank") == 0)["concept"].to_list()
    assert best == [concepts[int(i)] for i in idx[:, 0]]


def test_concept_set_frame_validates() -> None:
    idx = torch.tensor([[0, 1]])
    scores = torch.tensor([[0.5, 0.2]])
    with pytest.raises(RecordValidationError, match="concept"):
        C.concept_set_frame("m", "l", [0], "DB", "cos", idx, scores, ["dog", "dog"])
    with pytest.raises(ValueError, match="must be"):
        C.concept_set_frame("m", "l", [0, 1], "DB", "cos", idx, scores, ["dog", "cat"])
    with pytest.raises(ValueError, match="out of range"):
        C.concept_set_frame("m", "l", [0], "DB", "cos", idx + 5, scores, ["dog", "cat"])
