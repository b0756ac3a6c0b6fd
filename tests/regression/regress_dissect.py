"""Building the dissection of the regression fixtures, for ``test_dissection_regression``.

Runs everything the regression tests check once (``dissect``: embedding-mode summaries,
Module B under both rules, Module A's evidence and scores) through a ``RecordingEncoder``, so
that the comparisons in ``regress_compare`` evaluate tolerances and admissible alternatives on
exactly the embeddings the library saw, optionally moved by the embedding-error budget. Also
here: the fixture paths, this run's summary groups and near-tied medoids (``summary_groups``),
Module A's scores with their tolerances (``closed_scores``), and the data each baseline stores
(``summary_data``, ``calibration_data`` / ``calibration_arrays``, ``open_data``,
``evidence_tolerances``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from regression import tolerances as tol

from and_toolkit.dissect.calibrate import Calibration, CalibrationConfig, calibrate_many
from and_toolkit.dissect.closed import ClosedConfig, closed_concepts, concept_texts, db_evidence
from and_toolkit.dissect.extractive import (
    ExtractiveConfig,
    ExtractiveSummary,
    content_lemmas,
    lemma,
    summarise_many,
)
from and_toolkit.dissect.similarity import SIMILARITY_NAMES, rank_reorder
from and_toolkit.dissect.text import split_sentences

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "dissection"
KEY = ["model", "layer", "unit"]
RULES = {"paper": "none", "reference": "reference"}
POPULATIONS = ("per_layer", "per_neuron")


class Inputs(NamedTuple):
    """The fixture records (probe order / primary-key order)."""

    probe: pl.DataFrame
    captions: dict[str, str]
    activations: pl.DataFrame
    extremes: pl.DataFrame


def neuron_name(row: dict[str, Any]) -> str:
    side = f"/{row['side']}" if "side" in row else ""
    return f"{row['layer']}/{row['unit']}{side}"


class RecordingEncoder:
    """A TextEncoder that records what it returned, optionally moving every embedding.

    The tests evaluate tolerances and alternatives on exactly the embeddings the library saw.
    With ``noise`` > 0 every row gets a random vector of L2 norm ``noise`` added (then is
    re-normalised): another machine's embeddings, as far as the error budget goes.
    """

    def __init__(self, inner: Any, noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> None:
        self.inner, self.noise = inner, noise
        self.rng = rng or np.random.default_rng(0)
        self.texts: list[str] = []
        self.emb = np.zeros((0, 0), np.float32)

    @property
    def id(self) -> str:
        return str(self.inner.id)

    def encode(self, texts: list[str]) -> np.ndarray:
        e = np.asarray(self.inner.encode(texts), np.float64)
        if self.noise and len(e):
            r = self.rng.standard_normal(e.shape)
            e = e + self.noise * r / np.linalg.norm(r, axis=1, keepdims=True)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
        self.texts, self.emb = list(texts), e.astype(np.float32)
        return self.emb

    def rows(self, texts: Sequence[str]) -> np.ndarray:
        """The recorded embeddings of ``texts`` (each must have been in the last call)."""
        where = {t: i for i, t in enumerate(self.texts)}
        return self.emb[[where[t] for t in texts]]


def caption_lists(inp: Inputs) -> list[list[str]]:
    return [[inp.captions[c] for c in clips] for clips in inp.extremes["clip_ids"]]


def high_low(inp: Inputs, sums: list[ExtractiveSummary]
             ) -> tuple[list[dict[str, Any]], list[list[str]], list[list[str]]]:
    """(neuron keys in ActivationTable order, their S_h points, their S_l points)."""
    points: dict[tuple[str, int, str], list[str]] = {
        (r["layer"], r["unit"], r["side"]): list(s.points)
        for r, s in zip(inp.extremes.select(*KEY, "side").to_dicts(), sums, strict=True)}
    keys = inp.activations.select(KEY).to_dicts()
    return (keys, [points[(k["layer"], k["unit"], "high")] for k in keys],
            [points[(k["layer"], k["unit"], "low")] for k in keys])


# ----- embedding-mode summaries: this run's groups and near-tied medoids -------------------------
class SummaryGroup(NamedTuple):
    """One sentence group of the embedding-mode summariser, as this run's floats decide it."""

    clips: tuple[int, ...]
    members: tuple[str, ...]
    medoids: frozenset[str]
    """Members whose medoid score is within tolerance of the best: any may be the point."""
    words: frozenset[str]
    """Lemmas stated by some near-tied medoids but not all, that may make a word point (a word
    point is not repeated when the medoid states it): their word points may come and go."""
    unstable: str
    """Why the grouping itself may differ on another machine ('' = it cannot)."""


WORD_TAGS = frozenset({"JJ", "JJR", "JJS", "NN", "NNS"})


def summary_groups(captions: Sequence[str], enc: RecordingEncoder, tagger: Any,
                   cfg: ExtractiveConfig) -> list[SummaryGroup]:
    """The groups of one neuron's captions and their near-tied medoids (a test oracle).

    Follows ``and_toolkit.dissect.extractive`` (module doc, steps 1-5): sentences with content
    lemmas in caption order, greedy grouping (join the group holding the most similar member
    when that cosine >= threshold), medoid = the member with the largest sum of cosines to the
    others, and a word point is left out when a sentence point of at least its support
    states it. Cosines come from the embeddings the library got (``enc``), float32 as there.
    Tolerances: each cosine +- cosine_error; a medoid score (a sum of n - 1 cosines) +-
    (n - 1) cosine_error, so members whose scores differ by <= 2 (n - 1) cosine_error are
    tied (duplicated captions and two-member groups tie exactly: an ulp decides). A join
    decision within cosine_error of the threshold, or two candidate groups within
    2 cosine_error, could regroup the sentences on another machine: ``unstable`` says so (the
    fixture is built so that this never happens: margin 7.8e-3, 1000 x the tolerance).
    """
    items = [(c, s) for c, cap in enumerate(captions) for s in split_sentences(cap)
             if content_lemmas(s)]
    if not items:
        return []
    e = enc.rows([s for _, s in items])
    sim = e @ e.T
    dc, t = tol.cosine_error(), cfg.embedding_threshold
    groups: list[list[int]] = []
    unstable = ""
    for i in range(len(items)):
        best = sorted(((max(float(sim[i, j]) for j in g), -gi) for gi, g in enumerate(groups)),
                      reverse=True)
        if best and abs(best[0][0] - t) <= dc:
            unstable = f"join of {items[i][1]!r} at cosine {best[0][0]:.7f} ~ threshold {t}"
        if len(best) > 1 and best[0][0] >= t - dc and best[0][0] - best[1][0] <= 2 * dc:
            unstable = f"{items[i][1]!r} is as close to two groups"
        if best and best[0][0] >= t:
            groups[-best[0][1]].append(i)
        else:
            groups.append([i])
    # clips of each tagged adjective / noun lemma (negation ignored: an upper bound)
    word_clips: dict[str, set[int]] = {}
    for (clip, _), toks in zip(items, tagger.tag([s for _, s in items]), strict=True):
        for tok in toks:
            if tok.tag in WORD_TAGS:
                word_clips.setdefault(lemma(tok.text.lower()), set()).add(clip)
    out = []
    for g in groups:
        score = np.array([sum(float(sim[i, j]) for j in g if j != i) for i in g])
        near = score.max() - score <= 2 * tol.medoid_tolerance(len(g))
        medoids = frozenset(items[i][1] for i, ok in zip(g, near, strict=True) if ok)
        lem = [content_lemmas(s) for s in medoids]
        differ = frozenset.union(*lem) - frozenset.intersection(*lem)
        words = frozenset(w for w in differ if len(word_clips.get(w, ())) >= cfg.min_support)
        out.append(SummaryGroup(tuple(sorted({items[i][0] for i in g})),
                                tuple(items[i][1] for i in g), medoids, words, unstable))
    return out


# ----- Module A: scores and their tolerances -----------------------------------------------------
def layer_matrices(inp: Inputs) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(layer, alias, units, U [N, n] float32 in unit order) per layer."""
    out = []
    for layer, df in inp.activations.group_by("layer", maintain_order=True):
        df = df.sort("unit")
        out.append((str(layer[0]), str(df["alias"][0]), df["unit"].to_numpy(),
                    np.array(df["values"].to_numpy()).T))
    return out


def rank_reorder_alternatives(P: np.ndarray, U: np.ndarray, score: np.ndarray,
                              unstable: np.ndarray) -> np.ndarray:
    """max |alt - score| over the evidence orders reachable within tolerance, per element.

    For each unstable (neuron, concept) every order of its top clips' evidence that the bounds
    allow is realised (float32 values a few ulps from the originals) and scored by the library.
    """
    spread = np.zeros(score.shape)
    n_top = int(P.shape[0] * 0.05)
    top = tol.top_clips(U, n_top)
    tau = tol.softmax_evidence_error(P)
    for n, j in np.argwhere(unstable):
        clips = top[n]
        for perm in tol.rank_reorder_orders(P[clips, j].astype(np.float64), tau[clips, j]):
            P2 = np.array(P, np.float32)
            P2[clips, j] = tol.realise_order(P[clips, j], perm)
            alt = float(np.asarray(rank_reorder(P2, U))[n, j])
            spread[n, j] = max(spread[n, j], abs(alt - float(score[n, j])))
    return spread


def closed_scores(inp: Inputs, P: np.ndarray, concepts: list[str], population: str, k: int = 5
                  ) -> tuple[dict[str, dict[str, list[str]]], dict[str, np.ndarray],
                             dict[str, np.ndarray]]:
    """Module A per layer: (top-k concept names per neuron and function, as ranked by the
    library; every score in concept order per '<alias>-<function>'; each score's tolerance:
    tol.*_error, rank-reorder widened by the scores of its reachable evidence orders)."""
    cfg = ClosedConfig(population=population, k=len(concepts))  # type: ignore[arg-type]
    top: dict[str, dict[str, list[str]]] = {}
    scores: dict[str, np.ndarray] = {}
    tols: dict[str, np.ndarray] = {}
    for layer, alias, units, U in layer_matrices(inp):
        result = closed_concepts(P, U, concepts, cfg)
        assert set(result) == set(SIMILARITY_NAMES), (sorted(result), SIMILARITY_NAMES)
        for sim, (idx, sc) in result.items():
            order = np.asarray(idx)
            full = np.empty((U.shape[1], len(concepts)), dtype=np.asarray(sc).dtype)
            np.put_along_axis(full, order, np.asarray(sc), axis=1)
            scores[f"{alias}-{sim}"] = full
            for unit, row in zip(units, order[:, :k], strict=True):
                top.setdefault(f"{layer}/{unit}", {})[sim] = [concepts[i] for i in row]
        s = {sim: scores[f"{alias}-{sim}"] for sim in SIMILARITY_NAMES}
        rr, unstable = tol.rank_reorder_error(P, U, s["rank_reorder"])
        tols |= {
            f"{alias}-cos": tol.cos_error(P, U),
            f"{alias}-cos_cubed": tol.cos_cubed_error(P, U),
            f"{alias}-rank_reorder": rr + rank_reorder_alternatives(P, U, s["rank_reorder"],
                                                                    unstable),
            f"{alias}-wpmi": tol.wpmi_error(P, U, population, s["wpmi"]),
            f"{alias}-soft_wpmi": tol.soft_wpmi_error(P, U, population, s["soft_wpmi"]),
        }
    return top, scores, tols


# ----- the whole dissection, with what the comparisons need ---------------------------------------
@dataclass
class Dissection:
    """Every output of one run, plus this run's tolerances and admissible alternatives."""

    tagged: list[ExtractiveSummary] = field(default_factory=list)
    tagged_groups: list[list[SummaryGroup]] = field(default_factory=list)
    calibrated: dict[str, list[Calibration]] = field(default_factory=dict)
    cal_cos: dict[str, list[np.ndarray]] = field(default_factory=dict)
    evidence: dict[str, np.ndarray] = field(default_factory=dict)
    top: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    score_tol: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def dissect(inp: Inputs, sums: list[ExtractiveSummary], concepts: list[str], encoder: Any,
            tagger: Any, noise: float = 0.0, seed: int = 0) -> Dissection:
    """Run summaries (embedding mode), Module B, Module C's inputs and Module A once."""
    rng = np.random.default_rng(seed)
    out = Dissection()

    def rec() -> RecordingEncoder:
        return RecordingEncoder(encoder, noise, rng)

    # extractive summaries, embedding similarity + tagger
    r = rec()
    lists = caption_lists(inp)
    out.tagged = summarise_many(lists, ExtractiveConfig(similarity="embedding"), encoder=r,
                                tagger=tagger)
    out.tagged_groups = [summary_groups(caps, r, tagger, ExtractiveConfig(similarity="embedding"))
                         for caps in lists]
    # Module B under both rules; the cosine matrices exactly as calibrate_points computes them
    _, high, low = high_low(inp, sums)
    for rule, compat in RULES.items():
        r = rec()
        out.calibrated[rule] = calibrate_many(high, low, r, CalibrationConfig(compat=compat))
        out.cal_cos[rule] = [
            r.rows(h).astype(np.float64) @ r.rows(lo).astype(np.float64).T if h and lo
            else np.zeros((len(h), len(lo))) for h, lo in zip(high, low, strict=True)]
    # Module A: DB evidence (captions in probe order) and the five functions per layer
    r = rec()
    cap = r.encode([inp.captions[c] for c in inp.probe["clip_id"]])
    con = r.encode(concept_texts(concepts))
    out.evidence = {mode: np.asarray(db_evidence(cap, con, mode=mode))
                    for mode in ("softmax100", "cosine")}
    for population in POPULATIONS:
        out.top[population], out.scores[population], out.score_tol[population] = closed_scores(
            inp, out.evidence["softmax100"], concepts, population)
    return out


# ----- what the baselines store ------------------------------------------------------------------
def summary_data(inp: Inputs, sums: list[ExtractiveSummary]) -> dict[str, Any]:
    rows = inp.extremes.select(*KEY, "side").to_dicts()
    return {neuron_name(r): {"text": s.text, "points": list(s.points),
                             "support": [p.support for p in s.details],
                             "kinds": [p.kind for p in s.details]}
            for r, s in zip(rows, sums, strict=True)}


def tagged_keys(inp: Inputs) -> list[str]:
    return [neuron_name(r) for r in inp.extremes.select(*KEY, "side").to_dicts()]


def calibration_data(keys: list[dict[str, Any]], result: list[Calibration]) -> dict[str, Any]:
    return {neuron_name(k): {"kept": list(c.kept), "dropped": list(c.dropped),
                             "dropped_match": list(c.dropped_match),
                             "dropped_cos": [float(x) for x in c.dropped_cos],
                             "threshold": c.threshold}
            for k, c in zip(keys, result, strict=True)}


def calibration_arrays(keys: list[dict[str, Any]], cos: list[np.ndarray]
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every high-low cosine of every neuron (the margin of each decision to t) and its tol.

    Cosine of two float32 unit embeddings (float64 product): cosine_error.
    """
    arrays = {f"{k['layer']}-{k['unit']}": c for k, c in zip(keys, cos, strict=True) if c.size}
    return arrays, {k: np.full(a.shape, tol.cosine_error()) for k, a in arrays.items()}


def open_entry(points: list[str], r: Any) -> dict[str, Any]:
    return {"points": points,
            "adjectives": [f"{c.concept} ({c.tag}): {c.verdict}" for c in r.concepts],
            "kept": list(r.kept), "nouns": list(r.nouns), "verbs": list(r.verbs),
            "preps": list(r.preps), "caption_len": r.caption_len}


def open_data(keys: list[dict[str, Any]], points: list[list[str]], result: list[Any]
              ) -> dict[str, Any]:
    return {neuron_name(k): open_entry(p, r) for k, p, r in zip(keys, points, result, strict=True)}


def evidence_tolerances(evidence: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """softmax100: relative to P (tol.softmax_evidence_error); cosine: cosine_error."""
    return {"softmax100": tol.softmax_evidence_error(evidence["softmax100"]),
            "cosine": np.full(evidence["cosine"].shape, tol.cosine_error())}
