"""Module A: closed-concept identification (reference-spec §3, §15 items 6-7).

Evidence matrices P [N, M] (DB: caption vs concept text; TAB: audio vs concept text), the five
similarity functions of :mod:`and_toolkit.dissect.similarity` over all neurons of a layer,
top-k concept ranking, and ConceptSet(closed) rows. Text is encoded by the caller (a
TextEncoder backend); :func:`distinct_texts` / :func:`encode_distinct` make sure every
distinct caption or concept name is encoded once (the authors re-encode each neuron's
captions for every neuron and every similarity function).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import polars as pl
import torch
from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.dissect.similarity import (
    SIMILARITY_NAMES,
    Population,
    SimilarityConfig,
    as_matrix,
    check_inputs,
    neuron_chunk,
    similarities,
    top_sorted,
)
from and_toolkit.records import ConceptSet

EvidenceMode = Literal["softmax100", "cosine"]


class ClosedConfig(BaseModel):
    """Module A over one layer. Defaults = the paper's semantics (reference-spec §3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    similarity: SimilarityConfig = SimilarityConfig()
    population: Population = Field(
        default="per_layer", description="log p(c) of (soft-)WPMI: 'per_layer' (TAB, "
        "CLIP-Dissect) or 'per_neuron' (authors' DB: soft-WPMI is 0, WPMI (1 - lam) * L).")
    k: int = Field(default=5, ge=1, description="Concepts kept per neuron and function.")
    chunk_size: int = Field(default=4096, ge=1, description="Neurons per chunk (bounds memory).")
    db_hidden_topk_only: bool = Field(
        default=False, description="Authors' hidden-layer DB: only each neuron's top clips.")
    db_hidden_clips: int = Field(default=5, ge=1, description="Clips per neuron in that mode, K.")


# ----- text --------------------------------------------------------------------------------------
def concept_texts(names: Sequence[str]) -> list[str]:
    """Text encoded for each concept name (underscores as spaces: 'water drops')."""
    return [n.replace("_", " ") for n in names]


def distinct_texts(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct texts in first-occurrence order and the index of each input among them.

    Args:
        texts: n strings (captions or concept names).

    Returns:
        (unique [u] strings, inverse int64 [n]) with ``unique[inverse[i]] == texts[i]``.

    Raises:
        ValueError: an element is not a str.
    """
    position: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}]: expected str, got {type(text).__name__}")
        inverse[i] = position.setdefault(text, len(position))
    return list(position), inverse


def encode_distinct(texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]
                    ) -> tuple[np.ndarray, int]:
    """Encode every distinct text once and expand to one row per input.

    Args:
        texts: n strings.
        encode: e.g. ``TextEncoder.encode``: list of u strings -> float array [u, d].

    Returns:
        (embeddings float32 [n, d], number of strings passed to ``encode``).

    Raises:
        ValueError: ``encode`` returned a wrong number of rows.
    """
    unique, inverse = distinct_texts(texts)
    emb = np.asarray(encode(unique), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(unique):
        raise ValueError(f"encode: expected [{len(unique)}, d] embeddings, got {emb.shape}")
    return emb[inverse], len(unique)


# ----- evidence ----------------------------------------------------------------------------------
def _unit_rows(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    t = as_matrix(x, name)
    norms = t.norm(dim=1, keepdim=True)
    bad = ~torch.isfinite(norms) | (norms == 0)
    if bool(bad.any()):
        raise ValueError(f"{name}: row {int(bad.nonzero()[0, 0])} has zero or non-finite norm")
    return t / norms


def db_evidence(caption_emb: torch.Tensor | np.ndarray, concept_emb: torch.Tensor | np.ndarray,
                mode: EvidenceMode = "softmax100") -> torch.Tensor:
    """DB concept evidence from caption and concept-name text embeddings.

    Args:
        caption_emb: [N, d] embedding of each clip's caption (probe order).
        concept_emb: [M, d] embedding of each concept name.
        mode: 'softmax100' = softmax over concepts of 100 * cosine (the authors' DB code);
            'cosine' = the raw cosine the paper writes.

    Returns:
        P float32 [N, M]; with 'softmax100' each row sums to 1.

    Raises:
        ValueError: not 2-D, embedding widths differ, a zero-norm row, unknown mode.
    """
    d, c = _unit_rows(caption_emb, "caption_emb"), _unit_rows(concept_emb, "concept_emb")
    if d.shape[1] != c.shape[1]:
        raise ValueError(f"caption_emb width {d.shape[1]} != concept_emb width {c.shape[1]}")
    cosine = d @ c.T
    if mode == "cosine":
        return cosine
    if mode == "softmax100":
        return torch.softmax(100 * cosine, dim=1)
    raise ValueError(f"mode must be 'softmax100' or 'cosine', got {mode!r}")


def tab_evidence(audio_emb: torch.Tensor | np.ndarray, text_emb: torch.Tensor | np.ndarray
                 ) -> torch.Tensor:
    """TAB concept evidence: raw cosine of audio [N, d] and concept-text [M, d] embeddings.

    Returns:
        P float32 [N, M] in [-1, 1] (no softmax, no scale, as CLIP-Dissect).

    Raises:
        ValueError: as :func:`db_evidence`.
    """
    try:
        return db_evidence(audio_emb, text_emb, mode="cosine")
    except ValueError as err:  # name the TAB arguments in the message
        raise ValueError(str(err).replace("caption_emb", "audio_emb")
                         .replace("concept_emb", "text_emb")) from None


# ----- ranking -----------------------------------------------------------------------------------
def rank_concepts(scores: torch.Tensor | np.ndarray, concepts: Sequence[str], k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k concepts of each neuron, best first.

    Ties go to the lower concept index; NaN ranks like -inf (last).

    Args:
        scores: [n, M] similarity scores (higher = better).
        concepts: the M concept names (only their number is used here).
        k: concepts per neuron, 1 <= k <= M.

    Returns:
        (concept indices int64 [n, k], their scores float32 [n, k], NaN kept).

    Raises:
        ValueError: M != len(concepts) or k out of range.
    """
    s = as_matrix(scores, "scores")
    m = s.shape[1]
    if m != len(concepts):
        raise ValueError(f"scores has {m} concept columns but concepts has {len(concepts)} names")
    if not 1 <= k <= m:
        raise ValueError(f"k must be in [1, {m}], got {k}")
    key = torch.where(s.isnan(), -torch.inf, s)
    idx = torch.sort(key, dim=1, descending=True, stable=True).indices[:, :k]
    return idx, torch.gather(s, 1, idx)


# ----- Module A ----------------------------------------------------------------------------------
def _gathered_cos(vals: torch.Tensor, ev: torch.Tensor, cubed: bool, min_norm: float
                  ) -> torch.Tensor:
    """cos / cos-cubed over each neuron's own clips: vals [c, K], ev [c, K, M] -> [c, M]."""
    u = vals.unsqueeze(2)
    if cubed:
        u = (u - u.mean(dim=1, keepdim=True)).pow(3)
        ev = (ev - ev.mean(dim=1, keepdim=True)).pow(3)
        u = u / u.norm(dim=1, keepdim=True).clamp(min=min_norm)
        ev = ev / ev.norm(dim=1, keepdim=True).clamp(min=min_norm)
    else:
        u, ev = u / u.norm(dim=1, keepdim=True), ev / ev.norm(dim=1, keepdim=True)
    return (u * ev).sum(dim=1)


def db_hidden_topk_only(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
                        cfg: ClosedConfig | None = None) -> dict[str, torch.Tensor]:
    """The authors' hidden-layer DB: each neuron sees only its top-K clips (compat mode).

    Reproduces calling every similarity function once per neuron on the K captions of its top
    clips (activation order) and their activations. P rows depend on one caption each, so the
    evidence of those K clips is the K rows of the full P. With K = 5 rank-reorder has
    int(5 * 0.05) = 0 top clips and is NaN for every neuron; WPMI / soft-WPMI use
    min(top_k, K) clips; ``cfg.population`` applies as usual ('per_neuron' = the authors').

    Args:
        P: DB evidence [N, M] over all clips (:func:`db_evidence`).
        U: activations [N, n].
        cfg: Module A config (``db_hidden_clips`` = K).

    Returns:
        function name -> scores [n, M] float32.

    Raises:
        ValueError: K > N, or as :func:`and_toolkit.dissect.similarity.similarities`.
    """
    cfg = cfg or ClosedConfig()
    P, U = check_inputs(P, U, cfg.chunk_size)
    n_k, (n_clips, m), n = cfg.db_hidden_clips, P.shape, U.shape[1]
    if n_k > n_clips:
        raise ValueError(f"db_hidden_clips ({n_k}) exceeds the number of clips ({n_clips})")
    sim = cfg.similarity
    restricted = sim.model_copy(update={
        "wpmi": sim.wpmi.model_copy(update={"top_k": min(sim.wpmi.top_k, n_k)}),
        "soft_wpmi": sim.soft_wpmi.model_copy(update={"top_k": min(sim.soft_wpmi.top_k, n_k)}),
    })
    out = similarities(P, U, restricted, names=["rank_reorder", "wpmi", "soft_wpmi"],
                       population=cfg.population, chunk_size=cfg.chunk_size,
                       n_top=int(n_k * sim.rank_reorder.top_fraction))
    out["cos"], out["cos_cubed"] = torch.empty(n, m), torch.empty(n, m)
    for j0 in range(0, n, cfg.chunk_size):
        j1 = min(j0 + cfg.chunk_size, n)
        vals, idx = top_sorted(neuron_chunk(U, j0, j1), n_k)
        ev = P.index_select(0, idx.reshape(-1)).view(j1 - j0, n_k, m)
        out["cos"][j0:j1] = _gathered_cos(vals, ev, False, 0.0)
        out["cos_cubed"][j0:j1] = _gathered_cos(vals, ev, True, sim.cos_cubed.min_norm)
    return {name: out[name] for name in SIMILARITY_NAMES}


def closed_concepts(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
                    concepts: Sequence[str], cfg: ClosedConfig | None = None
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module A for one layer: all five similarity functions, top-k concepts of each neuron.

    Args:
        P: concept evidence [N, M] (:func:`db_evidence` or :func:`tab_evidence`).
        U: activations [N, n] of the layer's n neurons (probe order).
        concepts: the M concept names.
        cfg: Module A config.

    Returns:
        function name -> (concept indices int64 [n, k], scores float32 [n, k]).

    Raises:
        ValueError: shapes disagree, non-finite inputs, k > M.
    """
    cfg = cfg or ClosedConfig()
    if as_matrix(P, "P").shape[1] != len(concepts):
        raise ValueError(f"P has {as_matrix(P, 'P').shape[1]} columns but {len(concepts)} "
                         "concepts were given")
    if cfg.db_hidden_topk_only:
        scores = db_hidden_topk_only(P, U, cfg)
    else:
        scores = similarities(P, U, cfg.similarity, population=cfg.population,
                              chunk_size=cfg.chunk_size)
    return {name: rank_concepts(s, concepts, cfg.k) for name, s in scores.items()}


def concept_set_frame(model: str, layer: str, units: Sequence[int] | np.ndarray, method: str,
                      similarity: str, idx: torch.Tensor | np.ndarray,
                      scores: torch.Tensor | np.ndarray, concepts: Sequence[str]
                      ) -> pl.DataFrame:
    """ConceptSet(closed) rows of one layer, method and similarity function.

    Built column-wise with the record's exact schema (same frame as ``ConceptSet.frame(rows)``,
    without a dict per row), then validated.

    Args:
        model: target-network id.
        layer: torch module path.
        units: the n unit indices of the rows of ``idx`` / ``scores``.
        method: 'DB' or 'TAB'.
        similarity: function name, e.g. 'soft_wpmi'.
        idx: concept indices [n, k] from :func:`rank_concepts` (rank 0 = best).
        scores: their scores [n, k] (NaN allowed).
        concepts: the M concept names.

    Returns:
        ConceptSet frame with n * k rows (kind 'closed', pos null, verdict 'kept').

    Raises:
        ValueError: shapes disagree; RecordValidationError: e.g. duplicate concept names.
    """
    idx_np = np.asarray(idx, dtype=np.int64)
    score_np = np.asarray(scores, dtype=np.float64)
    unit_np = np.asarray(units, dtype=np.int64)
    if idx_np.ndim != 2 or idx_np.shape != score_np.shape or idx_np.shape[0] != len(unit_np):
        raise ValueError(f"idx {idx_np.shape}, scores {score_np.shape} and units "
                         f"({len(unit_np)}) must be [n, k], [n, k] and n")
    if idx_np.size and not (0 <= idx_np.min() and idx_np.max() < len(concepts)):
        raise ValueError(f"idx: concept index out of range [0, {len(concepts)})")
    n, k = idx_np.shape
    rows = n * k
    data = {
        "model": [model] * rows, "layer": [layer] * rows, "unit": np.repeat(unit_np, k),
        "method": [method] * rows, "similarity": [similarity] * rows,
        "concept": np.asarray(list(concepts), dtype=object)[idx_np.reshape(-1)].tolist(),
        "kind": ["closed"] * rows, "rank": np.tile(np.arange(k), n), "score": score_np.ravel(),
        "pos": [None] * rows, "verdict": ["kept"] * rows,
    }
    df = pl.DataFrame(data, schema=ConceptSet.polars_schema())
    return ConceptSet.validate_frame(df, source=f"concept_set_frame({model}, {layer})")
