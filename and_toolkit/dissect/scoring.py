"""Detection scores of neuron descriptions on held-out clips (issue 15), vectorised per layer.

A description is scored by how well the similarity between its text embedding and each clip's
embedding (the clip's caption, or the clip's audio with an audio-text encoder) predicts the
neuron's activation on clips that did not produce the description:

* **held-out clips** of a neuron: every probe clip except those used to write its descriptions
  (its top-K and bottom-K clips for the run's K and for every extra K the run used);
* **positives**: held-out clips whose activation is strictly above the activation of the
  ``(m + 1)``-th most activating held-out clip, ``m = ceil(q * n_heldout)``, so at most
  ``q * 100`` % of them (clips tied at the boundary count as negatives; a neuron constant on its
  held-out clips has no positive and no score);
* **AUC**: ROC AUC of the similarity as a predictor of "positive" (Mann-Whitney U with average
  ranks for ties), in [0, 1], 0.5 = chance;
* **Spearman**: rank correlation between similarity and activation over all held-out clips,
  in [-1, 1];
* **null**: the same two scores with a description taken from another neuron of the same layer
  (a seeded single-cycle shuffle, so no neuron keeps its own), scored against this neuron's
  activations and held-out clips.

Everything here is pure numpy: arrays in, arrays out, laid out neurons x clips ([n, N], each
neuron's clips contiguous). Activation ranks: one ``argsort`` per neuron plus a tie pass
(:func:`row_ranks`, excluded clips placed above every held-out clip), once per layer.
Similarity ranks: one sort per distinct description over the distinct clip texts
(:func:`sort_similarities`); a neuron's ranks follow from its held-out clips per text
(:func:`text_ranks`), shared by score and null, and both scores are sums over the distinct
texts (:class:`TextSums`, once per layer and clip side), never over every clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_Q = 0.05
"""Share of held-out clips counted as a neuron's "top" activations (the positives of the AUC)."""


def heldout_mask(n_clips: int, n_units: int, unit_idx: np.ndarray, clip_idx: np.ndarray
                 ) -> np.ndarray:
    """Which clips may score each neuron: every clip except the ones its descriptions came from.

    Args:
        n_clips: N probe clips.
        n_units: n neurons of the layer (rows).
        unit_idx: int [E] row (neuron of the layer) of each excluded (neuron, clip) pair.
        clip_idx: int [E] probe row of each excluded pair (repeats allowed).

    Returns:
        bool [n, N]: True where the clip is held out (usable for scoring).

    Raises:
        ValueError: indices out of range or of different lengths.
    """
    unit_idx = np.asarray(unit_idx, dtype=np.int64)
    clip_idx = np.asarray(clip_idx, dtype=np.int64)
    if unit_idx.shape != clip_idx.shape:
        raise ValueError(f"heldout_mask: {unit_idx.shape} unit indices vs {clip_idx.shape} clips")
    if unit_idx.size and (unit_idx.min() < 0 or unit_idx.max() >= n_units
                          or clip_idx.min() < 0 or clip_idx.max() >= n_clips):
        raise ValueError(f"heldout_mask: an excluded pair is outside [{n_clips}, {n_units}]")
    mask = np.ones((n_units, n_clips), dtype=bool)
    mask[unit_idx, clip_idx] = False
    return mask


def row_ranks(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of each row's kept entries among themselves.

    Args:
        values: float [n, N] (neurons x clips; finite where ``keep``).
        keep: bool [n, N]; dropped entries are ranked above every kept one (their ranks are
            meaningless and must be ignored).

    Returns:
        float64 [n, N]: for kept entries, ranks in 1..(kept count of the row).
    """
    x = np.where(keep, values.astype(np.float32, copy=False), np.float32(np.inf))
    n_rows, n_clips = x.shape
    if n_rows == 0 or n_clips == 0:
        return np.zeros(x.shape, dtype=np.float64)
    order = np.argsort(x, axis=1)
    srt = np.take_along_axis(x, order, axis=1)
    ranks = np.empty((n_rows, n_clips), dtype=np.float64)
    ordinal = np.arange(1, n_clips + 1, dtype=np.float64)
    # tie groups: a new group starts at clip 0 of every row and wherever the value changes
    start = np.ones_like(srt, dtype=bool)
    start[:, 1:] = srt[:, 1:] != srt[:, :-1]
    if start[np.isfinite(srt)].all():  # no tie among kept entries: ordinal ranks
        np.put_along_axis(ranks, order, np.broadcast_to(ordinal, srt.shape), axis=1)
        return ranks
    gid = np.cumsum(start.ravel()) - 1  # row-major, so groups never span two rows
    mean_rank = np.bincount(gid, weights=np.tile(ordinal, n_rows)) / np.bincount(gid)
    np.put_along_axis(ranks, order, mean_rank[gid].reshape(n_rows, n_clips), axis=1)
    return ranks


@dataclass(frozen=True)
class Detection:
    """Detection scores of n neurons (one description each).

    Attributes:
        auc: float64 [n] ROC AUC in [0, 1]; NaN without positives or negatives.
        spearman: float64 [n] in [-1, 1]; NaN when similarity or activation is constant.
        n_heldout: int64 [n] held-out clips.
        n_positive: int64 [n] positives (<= ceil(q * n_heldout)).
    """

    auc: np.ndarray
    spearman: np.ndarray
    n_heldout: np.ndarray
    n_positive: np.ndarray


@dataclass(frozen=True)
class ActivationRanks:
    """What the scores need from a layer's activations, computed once per layer.

    Attributes:
        keep: bool [n, N] held-out clips of each neuron.
        ranks: float64 [n, N] activation ranks among the held-out clips.
        positive: bool [n, N] held-out clips in the neuron's top q (module docstring).
    """

    keep: np.ndarray
    ranks: np.ndarray
    positive: np.ndarray

    def rows(self, idx: np.ndarray) -> ActivationRanks:
        """The same for the neurons ``idx`` only."""
        return ActivationRanks(self.keep[idx], self.ranks[idx], self.positive[idx])

    def centred(self) -> np.ndarray:
        """float64 [n, N]: ranks minus their held-out mean (n_heldout + 1) / 2; 0 where
        excluded."""
        mid = (self.keep.sum(axis=1) + 1) / 2.0
        return np.where(self.keep, self.ranks - mid[:, None], 0.0)


def activation_ranks(acts: np.ndarray, keep: np.ndarray, q: float = DEFAULT_Q) -> ActivationRanks:
    """Ranks and positives of a layer's activations over each neuron's held-out clips.

    Args:
        acts: float [n, N] activations (neurons x probe clips; ``LayerActivations.values.T``).
        keep: bool [n, N] held-out clips (:func:`heldout_mask`).
        q: share of held-out clips that may be positive, in (0, 1).

    Raises:
        ValueError: shapes differ, q outside (0, 1), or a non-finite held-out activation.
    """
    if acts.shape != keep.shape:
        raise ValueError(f"activation_ranks: activations {acts.shape} vs mask {keep.shape}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"activation_ranks: q must be in (0, 1), got {q}")
    if not np.isfinite(acts[keep]).all():
        raise ValueError("activation_ranks: non-finite activation on a held-out clip")
    x = np.where(keep, acts.astype(np.float32, copy=False), np.float32(np.inf))
    n_held = keep.sum(axis=1)
    m = np.ceil(q * n_held).astype(np.int64)
    srt = np.sort(x, axis=1)
    # the (m + 1)-th largest held-out value sits at ascending position n_held - m - 1
    pos = np.clip(n_held - m - 1, 0, max(x.shape[1] - 1, 0))
    bound = (srt[np.arange(x.shape[0]), pos] if x.shape[1]
             else np.zeros(x.shape[0], dtype=np.float32))
    positive = keep & (x > bound[:, None]) & (n_held - m - 1 >= 0)[:, None]
    return ActivationRanks(keep, row_ranks(acts, keep), positive)


def detection(sim: np.ndarray, act: ActivationRanks, centred: np.ndarray | None = None
              ) -> Detection:
    """AUC and Spearman of similarities against activations, neuron by neuron.

    Args:
        sim: float [n, N]: similarity of each clip to the description scored for each neuron.
        act: the neurons' :func:`activation_ranks`.
        centred: ``act.centred()`` if already computed (it is reused by real and null).

    Returns:
        :class:`Detection` of the n neurons.
    """
    if sim.shape != act.keep.shape:
        raise ValueError(f"detection: similarities {sim.shape} vs mask {act.keep.shape}")
    if not np.isfinite(sim[act.keep]).all():
        raise ValueError("detection: non-finite similarity on a held-out clip")
    return _scores(row_ranks(sim, act.keep), act, centred)


def _scores(r: np.ndarray, act: ActivationRanks, centred: np.ndarray | None) -> Detection:
    """AUC and Spearman from similarity ranks ``r`` [n, N] among held-out clips (overwritten)."""
    keep = act.keep
    n_held = keep.sum(axis=1)
    n_pos = act.positive.sum(axis=1)
    n_neg = n_held - n_pos
    rank_sum = r.sum(axis=1, where=act.positive)
    da = act.centred() if centred is None else centred
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
        r -= ((n_held + 1) / 2.0)[:, None]  # centred: the mean of the ranks 1..n_held
        r *= keep
        den = np.sqrt(np.einsum("ij,ij->i", r, r) * np.einsum("ij,ij->i", da, da))
        rho = np.einsum("ij,ij->i", r, da) / den
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    rho = np.where(den > 0, np.clip(rho, -1.0, 1.0), np.nan)
    return Detection(auc, rho, n_held.astype(np.int64), n_pos.astype(np.int64))


@dataclass(frozen=True)
class SortedSimilarities:
    """Each distinct description's similarities to the C distinct clip texts, sorted once.

    Attributes:
        order: int64 [u, C] text order by ascending similarity.
        first, last: int64 [u, C] first / last sorted position of the group of equal
            similarities each sorted position belongs to (itself when untied).
    """

    order: np.ndarray
    first: np.ndarray
    last: np.ndarray


def sort_similarities(sims: np.ndarray) -> SortedSimilarities:
    """Sort ``sims`` (float32 [u, C], finite) per row; see :class:`SortedSimilarities`."""
    if not np.isfinite(sims).all():
        raise ValueError("sort_similarities: non-finite similarity")
    order = np.argsort(sims, axis=1)
    srt = np.take_along_axis(sims, order, axis=1)
    u, c = srt.shape
    pos = np.broadcast_to(np.arange(c), (u, c))
    new = np.ones((u, c), dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    first = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    end = np.ones((u, c), dtype=bool)
    end[:, :-1] = new[:, 1:]
    last = np.minimum.accumulate(np.where(end, pos, c - 1)[:, ::-1], axis=1)[:, ::-1]
    return SortedSimilarities(order, first, np.ascontiguousarray(last))


def per_text(weights: np.ndarray, clip_rows: np.ndarray, n_texts: int) -> np.ndarray:
    """float64 [n, C]: each neuron's per-clip ``weights`` [n, N] summed over the clips that
    carry each distinct text (``clip_rows`` [N])."""
    n = weights.shape[0]
    flat = (np.arange(n, dtype=np.int64)[:, None] * n_texts + clip_rows[None, :]).ravel()
    return np.bincount(flat, weights=np.asarray(weights, dtype=np.float64).ravel(),
                       minlength=n * n_texts).reshape(n, n_texts)


def text_ranks(srt: SortedSimilarities, which: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rank (ties averaged) that neuron i's held-out clips carrying each distinct text get by
    the similarity of description ``which[i]``: float64 [n, C] (meaningless where the neuron
    holds out no clip of that text). No per-neuron sort: the description's text order is
    shared, and clips sharing a text (tied by construction) are handled as one.

    Args:
        srt: :func:`sort_similarities` of the u distinct descriptions.
        which: int [n] description of each neuron (row of ``srt``).
        counts: float64 [n, C] held-out clips per text (``TextSums.counts``).
    """
    order = srt.order[which]
    cnt = np.take_along_axis(counts, order, axis=1)  # held-out clips per text, sorted order
    cum = np.zeros((cnt.shape[0], cnt.shape[1] + 1))
    np.cumsum(cnt, axis=1, out=cum[:, 1:])
    before = np.take_along_axis(cum, srt.first[which], axis=1)  # kept clips below the group
    upto = np.take_along_axis(cum, srt.last[which] + 1, axis=1)  # ... up to its end
    by_text = np.empty(cnt.shape)
    np.put_along_axis(by_text, order, before + (upto - before + 1) / 2.0, axis=1)
    return by_text


@dataclass(frozen=True)
class TextSums:
    """A layer's held-out clips summed per distinct clip text, once per (layer, description
    kind, clip side): the AUC and the Spearman correlation then need only [n, C] sums.

    Attributes:
        counts: float64 [n, C] held-out clips per text.
        positives: float64 [n, C] positive clips (top q) per text.
        act: float64 [n, C] sum of the centred activation ranks of held-out clips per text.
        act_ss: float64 [n] sum of squared centred activation ranks over held-out clips.
    """

    counts: np.ndarray
    positives: np.ndarray
    act: np.ndarray
    act_ss: np.ndarray

    def rows(self, idx: np.ndarray) -> TextSums:
        """The same for the neurons ``idx`` only."""
        return TextSums(self.counts[idx], self.positives[idx], self.act[idx], self.act_ss[idx])


def text_sums(part: ActivationRanks, clip_rows: np.ndarray, n_texts: int) -> TextSums:
    """:class:`TextSums` of the neurons of ``part`` for clip texts ``clip_rows`` [N]."""
    centred = part.centred()
    return TextSums(per_text(part.keep, clip_rows, n_texts),
                    per_text(part.positive, clip_rows, n_texts),
                    per_text(centred, clip_rows, n_texts),
                    np.einsum("ij,ij->i", centred, centred))


def _text_scores(by_text: np.ndarray, sums: TextSums) -> Detection:
    """AUC and Spearman from :func:`text_ranks` (equal to :func:`_scores` on the clip ranks:
    every clip of a text has the text's rank)."""
    n_held = np.rint(sums.counts.sum(axis=1)).astype(np.int64)  # exact: counts are integers
    n_pos = np.rint(sums.positives.sum(axis=1)).astype(np.int64)
    n_neg = n_held - n_pos
    rank_sum = np.einsum("ij,ij->i", by_text, sums.positives)
    by_text -= ((n_held + 1) / 2.0)[:, None]  # centred: the mean of the ranks 1..n_held
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
        den = np.sqrt(np.einsum("ij,ij,ij->i", by_text, by_text, sums.counts) * sums.act_ss)
        rho = np.einsum("ij,ij->i", by_text, sums.act) / den
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    rho = np.where(den > 0, np.clip(rho, -1.0, 1.0), np.nan)
    return Detection(auc, rho, n_held.astype(np.int64), n_pos.astype(np.int64))


def shuffle_donors(n: int, seed: int) -> np.ndarray:
    """A seeded derangement of ``range(n)``: neuron i is scored with the description of
    neuron ``donors[i] != i`` (one random cycle through all n; n = 1 gives ``[0]``, whose null
    the caller must drop).

    Returns:
        int64 [n].
    """
    order = np.random.default_rng(seed).permutation(n)
    donors = np.empty(n, dtype=np.int64)
    donors[order] = np.roll(order, -1)
    return donors


def layer_seed(seed: int, *parts: str) -> int:
    """A seed for one (layer, description kind): ``seed`` mixed with the parts' text, stable
    across processes (no Python ``hash``)."""
    acc = seed & 0xFFFFFFFF
    for ch in "\x1f".join(parts).encode("utf-8"):
        acc = (acc * 1_000_003 + ch) % (2**61 - 1)
    return acc


@dataclass(frozen=True)
class LayerScores:
    """Scores of the described neurons of one layer for one description kind.

    Attributes:
        rows: int64 [m] rows (neurons) of the layer that have a description.
        real: :class:`Detection` of their own descriptions.
        null: :class:`Detection` of a shuffled description (another described neuron's).
        donors: int64 [m] neuron (row) whose description gave the null (-1 if none: m = 1).
    """

    rows: np.ndarray
    real: Detection
    null: Detection
    donors: np.ndarray


def score_layer(clip_emb: np.ndarray, clip_rows: np.ndarray, desc_emb: np.ndarray,
                desc_of: np.ndarray, act: ActivationRanks, seed: int,
                sums: TextSums | None = None) -> LayerScores:
    """Score one description kind on one layer, with its shuffled null.

    Args:
        clip_emb: float32 [C, d] L2-normalised embeddings of the distinct clip texts (or audio).
        clip_rows: int [N] row of ``clip_emb`` for each probe clip (duplicate captions share a
            row, so their similarities tie exactly).
        desc_emb: float32 [U, d] L2-normalised embeddings of distinct descriptions (only the
            rows ``desc_of`` uses are read).
        desc_of: int [n] row of ``desc_emb`` describing each neuron, -1 = no description.
        act: the layer's :func:`activation_ranks` (n x N).
        seed: seed of the null's shuffle (e.g. :func:`layer_seed`).
        sums: ``text_sums(act, clip_rows, C)`` of the whole layer when already computed (it
            depends only on the layer and the clip side, so every description kind shares it).

    Returns:
        :class:`LayerScores` of the described neurons.
    """
    desc_of = np.asarray(desc_of, dtype=np.int64)
    cols = np.flatnonzero(desc_of >= 0)
    clip_rows = np.asarray(clip_rows, dtype=np.int64)
    used, which = np.unique(desc_of[cols], return_inverse=True)
    # each distinct description used here against each distinct clip text, once: [u, C]
    srt = sort_similarities(desc_emb[used] @ clip_emb.T)  # shared by the score and the null
    sums = (text_sums(act.rows(cols), clip_rows, clip_emb.shape[0]) if sums is None
            else sums if cols.size == sums.act_ss.size else sums.rows(cols))
    real = _text_scores(text_ranks(srt, which, sums.counts), sums)
    local = shuffle_donors(cols.size, seed)
    null = _text_scores(text_ranks(srt, which[local], sums.counts), sums)
    if cols.size < 2:
        null = Detection(np.full(cols.size, np.nan), np.full(cols.size, np.nan),
                         null.n_heldout, null.n_positive)
    donors = cols[local] if cols.size >= 2 else np.full(cols.size, -1, dtype=np.int64)
    return LayerScores(cols, real, null, donors)


def chance_threshold(null: np.ndarray, level: float = 0.95) -> float:
    """The ``level`` quantile of finite null scores (linear interpolation); NaN if none.

    A description scores "above chance" when its score is strictly above this value of the
    null of its (model, layer, description kind).
    """
    finite = null[np.isfinite(null)]
    return float(np.quantile(finite, level)) if finite.size else math.nan
