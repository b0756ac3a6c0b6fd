"""Detection scores on held-out clips: ranks, AUC / Spearman, the null, the exclusion of the
clips a description was written from, and a planted concept test."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata, spearmanr

from and_toolkit.backends.encoders import HashingEncoder
from and_toolkit.dissect.closed import distinct_texts
from and_toolkit.dissect.explanations import descriptions, excluded_clips
from and_toolkit.dissect.scoring import (
    activation_ranks,
    chance_threshold,
    detection,
    heldout_mask,
    row_ranks,
    score_layer,
    shuffle_donors,
)
from and_toolkit.records import CalibratedSummary, ConceptSet, Extremes


def test_row_ranks_average_ties_and_ignore_dropped_clips() -> None:
    values = np.array([[3.0, 1.0, 1.0, 9.0, 2.0], [0.0, 0.0, 0.0, 5.0, -1.0]], np.float32)
    keep = np.array([[True, True, True, False, True], [True, True, True, True, True]])
    r = row_ranks(values, keep)
    assert r[0, keep[0]].tolist() == [4.0, 1.5, 1.5, 3.0]  # 9.0 dropped: not ranked among them
    assert r[1].tolist() == rankdata(values[1]).tolist()


def test_detection_matches_hand_counts() -> None:
    # 10 held-out clips + 1 dropped; q = 0.2 -> m = 2 positives: activations 9 and 8
    acts = np.array([[9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 100]], np.float32)
    sim = np.array([[0.9, 0.1, 0.8, 0.2, 0.2, 0.3, 0.0, 0.0, 0.0, 0.0, 5.0]], np.float32)
    keep = np.ones_like(acts, dtype=bool)
    keep[0, -1] = False
    act = activation_ranks(acts, keep, q=0.2)
    assert act.positive[0].nonzero()[0].tolist() == [0, 1]
    d = detection(sim, act)
    # pairs (pos, neg) with pos ahead: 0.9 beats all 8; 0.1 beats the four 0.0 -> 12 of 16
    assert d.auc[0] == pytest.approx(12 / 16)
    assert d.spearman[0] == pytest.approx(spearmanr(sim[0, :10], acts[0, :10]).statistic)
    assert (d.n_heldout[0], d.n_positive[0]) == (10, 2)


def test_ties_at_the_boundary_are_negative_and_constant_neurons_unscored() -> None:
    acts = np.array([[5, 1, 1, 1, 1, 1, 1, 1, 1, 1], [2] * 10], np.float32)
    keep = np.ones_like(acts, dtype=bool)
    act = activation_ranks(acts, keep, q=0.3)  # m = 3, but only one clip is above the tie
    assert act.positive.sum(axis=1).tolist() == [1, 0]
    d = detection(np.tile(np.linspace(0, 1, 10, dtype=np.float32), (2, 1)), act)
    assert math.isnan(d.auc[1]) and math.isnan(d.spearman[1])


def test_shared_sort_gives_the_same_scores_as_one_sort_per_neuron() -> None:
    """score_layer sorts each distinct description once over the distinct clip texts and
    counts each neuron's held-out clips per text; the result must equal ranking every neuron's
    held-out similarities on its own (with ties: duplicate clip texts)."""
    rng = np.random.default_rng(5)
    n, n_clips, n_texts = 30, 80, 25
    clip_emb = rng.normal(size=(n_texts, 8)).astype(np.float32)
    clip_rows = rng.integers(0, n_texts, n_clips)  # duplicates -> exact ties
    desc_emb = rng.normal(size=(6, 8)).astype(np.float32)
    desc_of = rng.integers(-1, 6, n)
    keep = rng.random((n, n_clips)) > 0.15
    act = activation_ranks(rng.normal(size=(n, n_clips)).astype(np.float32), keep, q=0.1)
    s = score_layer(clip_emb, clip_rows, desc_emb, desc_of, act, seed=1)
    sims = (desc_emb @ clip_emb.T)[:, clip_rows]
    part = act.rows(s.rows)
    for got, used in ((s.real, desc_of[s.rows]), (s.null, desc_of[s.donors])):
        ref = detection(sims[used], part)
        np.testing.assert_allclose(got.auc, ref.auc, rtol=1e-12)
        np.testing.assert_allclose(got.spearman, ref.spearman, rtol=1e-9)


def test_shuffle_donors_is_a_seeded_derangement() -> None:
    a = shuffle_donors(50, seed=3)
    assert sorted(a.tolist()) == list(range(50)) and (a != np.arange(50)).all()
    assert (a == shuffle_donors(50, seed=3)).all() and (a != shuffle_donors(50, seed=4)).any()


def test_heldout_mask_refuses_out_of_range_pairs() -> None:
    with pytest.raises(ValueError, match="outside"):
        heldout_mask(5, 2, np.array([2]), np.array([0]))


CONCEPTS = ["dog", "rain", "bell", "engine", "bird", "siren", "clock", "wind"]
"""Planted concepts; 'violin' never occurs in a caption."""


def _planted(n_per: int = 120, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Captions naming one concept each, and one neuron per concept firing on its clips."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CONCEPTS)), n_per)
    rng.shuffle(labels)
    fillers = ["in a room", "outdoors", "far away", "close by", "at night", "with echo"]
    captions = [f"A {CONCEPTS[k]} sound {fillers[rng.integers(len(fillers))]}." for k in labels]
    acts = (labels[None, :] == np.arange(len(CONCEPTS))[:, None]).astype(np.float32)
    acts += rng.normal(0.0, 0.05, acts.shape).astype(np.float32)  # [n_neurons, N]
    return captions, acts, labels


def _auc_bound(n_pos: int, n_neg: int, z: float = 4.0) -> float:
    """z standard deviations of a chance AUC (Mann-Whitney, no ties) for these counts."""
    return z * math.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))


def test_planted_concept_scores_near_one_and_unrelated_near_chance() -> None:
    captions, acts, _ = _planted()
    enc = HashingEncoder()
    distinct, rows = distinct_texts(captions)
    clip_emb = enc.encode(distinct)
    texts = CONCEPTS + ["violin"]
    desc_emb = enc.encode(texts)
    keep = np.ones_like(acts, dtype=bool)
    # q = the share of a concept's clips, so a neuron's positives are exactly its concept's clips
    act = activation_ranks(acts, keep, q=1 / len(CONCEPTS))
    assert (act.positive.sum(axis=1) == acts.shape[1] // len(CONCEPTS)).all()
    own = score_layer(clip_emb, rows, desc_emb, np.arange(len(CONCEPTS)), act, seed=0)
    assert (own.real.auc > 0.99).all()
    assert (own.real.spearman > 0.5).all()
    unrelated = score_layer(clip_emb, rows, desc_emb, np.full(len(CONCEPTS), len(CONCEPTS)),
                            act, seed=0)
    n_pos, n_neg = int(act.positive[0].sum()), int((~act.positive[0]).sum())
    assert (np.abs(unrelated.real.auc - 0.5) < _auc_bound(n_pos, n_neg)).all()
    # the null (another concept's description) is no better than chance on this neuron
    assert (own.null.auc < 0.5 + _auc_bound(n_pos, n_neg)).all()
    assert (own.real.auc > chance_threshold(own.null.auc)).all()


def test_own_top_k_clips_never_reach_the_scoring_set() -> None:
    """A neuron explained from its top-K clips: only those clips match the description, so a
    scoring set that kept them would give an AUC near 1; held out, it is at chance."""
    rng = np.random.default_rng(1)
    n, k = 400, 20  # k = q * n: with a leak, the positives would be exactly the top-K
    acts = rng.normal(0.0, 1.0, (1, n)).astype(np.float32)
    top = np.argsort(-acts[0])[:k]
    bottom = np.argsort(acts[0])[:k]
    captions = [f"Noise number {i}." for i in range(n)]
    for i in top:
        captions[i] = "A dog barks."
    clip_ids = [f"c{i}" for i in range(n)]
    extremes = Extremes.frame([
        {"model": "m", "layer": "l", "unit": 0, "side": side, "k": k,
         "clip_ids": [clip_ids[i] for i in idx], "values": [float(acts[0, i]) for i in idx]}
        for side, idx in (("high", top), ("low", bottom))])
    ex = excluded_clips([extremes])
    assert ex.height == 2 * k
    keep = heldout_mask(n, 1, np.zeros(ex.height, np.int64),
                        np.array([clip_ids.index(c) for c in ex["clip_id"]]))
    assert not keep[0, top].any() and not keep[0, bottom].any() and keep.sum() == n - 2 * k
    enc = HashingEncoder()
    distinct, rows = distinct_texts(captions)
    clip_emb, desc_emb = enc.encode(distinct), enc.encode(["A dog barks."])
    held = score_layer(clip_emb, rows, desc_emb, np.array([0]),
                       activation_ranks(acts, keep, q=0.05), seed=0)
    leaky = score_layer(clip_emb, rows, desc_emb, np.array([0]),
                        activation_ranks(acts, np.ones_like(keep), q=0.05), seed=0)
    assert leaky.real.auc[0] > 0.95  # what a leak would look like
    n_pos = int(held.real.n_positive[0])
    assert abs(held.real.auc[0] - 0.5) < _auc_bound(n_pos, n - 2 * k - n_pos)
    assert held.real.n_heldout[0] == n - 2 * k


def test_descriptions_of_each_kind_and_variant() -> None:
    neuron = {"model": "m", "layer": "l"}
    concepts = ConceptSet.frame([
        {**neuron, "unit": 0, "method": "DB", "similarity": "cos", "concept": c, "kind": "closed",
         "rank": r, "score": 1.0 - r, "pos": None, "verdict": "kept"}
        for r, c in enumerate(["water_drops", "rain"])] + [
        {**neuron, "unit": u, "method": m, "similarity": "", "concept": w, "kind": "open",
         "rank": r, "score": None, "pos": "ADJ", "verdict": v}
        for u, m, w, r, v in [(0, "OCP", "loud", 0, "kept"), (0, "OCP", "sharp", 1, "kept"),
                              (0, "OCP", "not", 2, "dropped:negation"),
                              (1, "OCP+descriptors", "brief", 0, "kept")]])
    cal = CalibratedSummary.frame([
        {**neuron, "unit": u, "kept": kept, "dropped": [], "dropped_match": [],
         "dropped_cos": [], "threshold": 0.7, "rule": "paper", "encoder": "x"}
        for u, kept in [(0, ["A dog barks.", "Rain falls."]), (1, [])]])
    d = descriptions(concepts, cal, "")
    got = {(r["unit"], r["kind"], r["method"]): r["description"] for r in d.iter_rows(named=True)}
    assert got == {(0, "closed", "DB"): "water drops", (0, "open", "OCP"): "loud, sharp",
                   (0, "summary", "SUM"): "A dog barks. Rain falls."}
    v = descriptions(concepts, None, "descriptors")
    assert v.filter(pl.col("kind") == "open")["description"].to_list() == ["brief"]
    assert set(v["variant"]) == {"descriptors"}
    with pytest.raises(ValueError, match="variant"):
        descriptions(concepts, cal, "other")
