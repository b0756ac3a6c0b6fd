"""Module A similarity functions: concept evidence P [N, M] x activations U [N, n] -> [n, M].

Five functions (reference-spec §3.2, defaults = the authors' calls): ``cos``, ``cos_cubed``,
``rank_reorder``, ``wpmi`` and ``soft_wpmi``; pure CPU functions, vectorised over chunks of
neurons, memory bounded by one chunk (``chunk_size * k * M`` gathered values, never N x M x n).
:func:`similarities` runs several at once and shares one top-k selection per chunk; ``*_loop``
are the plain per-neuron formulations (as in the authors' code) for benchmarks and tests.

Choices that differ from the reference code (all documented where they apply):
* top clips are ranked by activation with ties to the lower clip index, and rank-reorder's
  argsort breaks ties by top-list position, so results never depend on the chunk size;
* rank-reorder's normaliser B uses ``n_permutations`` permutations from a seeded
  ``torch.Generator``, shared by all neurons (authors: 5 unseeded ones per neuron);
* (soft-)WPMI sum log-probabilities in float64 (authors: float32) and return float32;
* the (soft-)WPMI population for log p(c) is explicit (``per_layer`` / ``per_neuron``);
* rank-reorder sorts packed integer keys with numpy (torch's small-row sort is ~15x slower).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

Population = Literal["per_layer", "per_neuron"]
SIMILARITY_NAMES: tuple[str, ...] = ("cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CosConfig(_Frozen):
    """Plain cosine: L2-normalise P and U over clips (no eps, no centring). No parameters."""


class CosCubedConfig(_Frozen):
    """Cosine of centred, cubed columns (CLIP-Dissect ``cos_similarity_cubed``)."""

    min_norm: float = Field(default=1e-3, gt=0, description="Lower clamp of a column's L2 norm.")


class RankReorderConfig(_Frozen):
    """Rank-reorder error of the top activating clips."""

    p: float = Field(default=3.0, gt=0, description="Exponent of the absolute error.")
    top_fraction: float = Field(
        default=0.05, gt=0, le=1, description="n_top = int(N * top_fraction) top clips.")
    scale_p: float = Field(default=0.5, description="Error is divided by avg_c ** scale_p.")
    variant: Literal["and", "clip_dissect"] = Field(
        default="and", description="'and': single argsort, ReLU(avg), nanmean (authors' AND "
        "code); 'clip_dissect': double argsort (ranks), plain mean, no ReLU.")
    n_permutations: int = Field(
        default=5, ge=1, description="Random permutations of the normaliser B.")
    seed: int = Field(default=0, description="Seed of the torch.Generator of the permutations.")


class WpmiConfig(_Frozen):
    """Weighted pointwise mutual information."""

    top_k: int = Field(default=28, ge=1, description="Top clips per neuron (clamped to N).")
    a: float = Field(default=2.0, description="Softmax scale: Q = softmax(a * P) over concepts.")
    lam: float = Field(default=0.6, description="Weight of log p(c).")
    min_prob: float = Field(default=1e-7, ge=0, description="Added inside the log.")


class SoftWpmiConfig(_Frozen):
    """Soft WPMI: clip rank i weighted by w_i = p_start - (i / k) (p_start - p_end)."""

    top_k: int = Field(default=100, ge=1, description="Top clips per neuron (clamped to N).")
    a: float = Field(default=10.0, description="Softmax scale: Q = softmax(a * P) over concepts.")
    lam: float = Field(default=1.0, description="Weight of log p(c).")
    min_prob: float = Field(default=1e-7, ge=0, description="Added inside the log.")
    p_start: float = Field(default=0.998, ge=0, le=1, description="Weight of the top clip.")
    p_end: float = Field(default=0.97, ge=0, le=1, description="Weight near the k-th clip.")

    @model_validator(mode="after")
    def _check_order(self) -> SoftWpmiConfig:
        if self.p_end > self.p_start:
            raise ValueError(f"p_end ({self.p_end}) must not exceed p_start ({self.p_start})")
        return self


class SimilarityConfig(_Frozen):
    """The five configs together (defaults = the authors' calls)."""

    cos: CosConfig = CosConfig()
    cos_cubed: CosCubedConfig = CosCubedConfig()
    rank_reorder: RankReorderConfig = RankReorderConfig()
    wpmi: WpmiConfig = WpmiConfig()
    soft_wpmi: SoftWpmiConfig = SoftWpmiConfig()


# ----- shared helpers ----------------------------------------------------------------------------
SOFT_TABLE_MAX_BYTES = 256 * 2**20
"""Largest soft-WPMI log table (k * N * M float64) precomputed instead of logs per chunk."""


def as_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D float32 CPU tensor (no copy when already one).

    Raises:
        ValueError: ``x`` is not 2-D or has an empty dimension (message names ``name``).
    """
    t = torch.as_tensor(x).to(device="cpu", dtype=torch.float32)
    if t.ndim != 2 or 0 in t.shape:
        raise ValueError(f"{name}: expected a non-empty 2-D matrix, got shape {tuple(t.shape)}")
    return t


def check_inputs(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray, chunk_size: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate and convert P [N, M] and U [N, n] (finite activations are checked per chunk).

    Raises:
        ValueError: not 2-D float matrices, clip counts differ, non-finite P, chunk_size < 1.
    """
    P, U = as_matrix(P, "P"), as_matrix(U, "U")
    if P.shape[0] != U.shape[0]:
        raise ValueError(f"P has {P.shape[0]} clips (rows) but U has {U.shape[0]}")
    if not bool(torch.isfinite(P).all()):
        raise ValueError("P: concept evidence contains NaN or inf")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return P, U


def neuron_chunk(U: torch.Tensor, j0: int, j1: int) -> torch.Tensor:
    """Activations of neurons j0..j1-1 as a contiguous [c, N] tensor.

    A view (no copy) when U is the transpose of a neuron-major [n, N] array.

    Raises:
        ValueError: a neuron of the chunk has NaN or inf activations.
    """
    uc = U[:, j0:j1].T.contiguous()
    lo, hi = torch.aminmax(uc)  # NaN propagates
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        bad = int((~torch.isfinite(uc).all(dim=1)).nonzero()[0])
        raise ValueError(f"U: neuron {j0 + bad} has NaN or inf activations")
    return uc


def top_sorted(uc: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` activations of each row, descending; ties -> lower clip index first.

    Args:
        uc: activations [c, N] (one row per neuron).
        k: number of clips, 0 <= k <= N.

    Returns:
        (values [c, k] float32, clip indices [c, k] int64).
    """
    vals, idx = torch.topk(uc, min(k + 1, uc.shape[1]), dim=1, largest=True, sorted=True)
    # torch.topk orders equal values arbitrarily; an equal adjacent pair in the top k+1 means a
    # tie inside the list or across its boundary: those rows are redone with a stable sort.
    ties = (vals[:, 1:] == vals[:, :-1]).any(dim=1)
    if bool(ties.any()):
        rows = ties.nonzero().squeeze(1)
        sv, si = torch.sort(uc[rows], dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = sv[:, : vals.shape[1]], si[:, : vals.shape[1]]
    return vals[:, :k], idx[:, :k].contiguous()


def dense_rank(P: torch.Tensor) -> torch.Tensor:
    """Dense rank of each column of P over clips (equal values share a rank), int64 [N, M]."""
    vals, order = torch.sort(P, dim=0, stable=True)
    new = torch.ones_like(vals, dtype=torch.int64)
    new[1:] = (vals[1:] != vals[:-1]).to(torch.int64)
    return torch.empty_like(order).scatter_(0, order, new.cumsum(dim=0) - 1)


def _position_bits(n_top: int) -> int:
    return max(1, (n_top - 1).bit_length())


def rank_key_table(P: torch.Tensor, n_top: int) -> torch.Tensor:
    """Sort keys [M, N]: dense rank of P[clip, c] shifted left by bits(n_top).

    OR-ing a top-list position into the low bits gives keys that order by evidence, ties by
    position. int32 when they fit in 31 bits, else int64.
    """
    bits = _position_bits(n_top)
    dtype = torch.int32 if (P.shape[0] - 1).bit_length() + bits <= 31 else torch.int64
    return (dense_rank(P) << bits).T.contiguous().to(dtype)


def baseline_permutations(n_top: int, cfg: RankReorderConfig) -> torch.Tensor:
    """The seeded permutations [n_permutations, n_top] used by rank-reorder's normaliser B.

    One set is shared by every neuron (the authors draw 5 unseeded ones per neuron; B only
    rescales a neuron's row), so a neuron's score does not depend on the others in the call.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    return torch.stack([torch.randperm(n_top, generator=g) for _ in range(cfg.n_permutations)])


def soft_weights(k: int, cfg: SoftWpmiConfig) -> torch.Tensor:
    """Soft-WPMI weights w_i = p_start - (i / k)(p_start - p_end), i = 0..k-1, float64 [k]."""
    return cfg.p_start - torch.arange(k, dtype=torch.float64) / k * (cfg.p_start - cfg.p_end)


def concept_probs(P: torch.Tensor, a: float) -> torch.Tensor:
    """Q = softmax(a * P) over concepts, float64 [N, M] ((soft-)WPMI accumulate in float64)."""
    return torch.softmax(a * P.double(), dim=1)


def apply_population(L: torch.Tensor, lam: float, population: Population) -> torch.Tensor:
    """score = L - lam * log p(c), in place on L [n, M].

    per_layer: log p(c) = logsumexp over the n neurons of L[:, c] - log n (TAB / CLIP-Dissect).
    per_neuron: each neuron is its own population, log p(c) = L (authors' DB): the score is
    (1 - lam) * L, identically 0 for lam = 1.
    """
    if population == "per_neuron":
        return L.sub_(lam * L)
    if population != "per_layer":
        raise ValueError(f"population must be 'per_layer' or 'per_neuron', got {population!r}")
    log_p = torch.logsumexp(L, dim=0, keepdim=True) - math.log(L.shape[0])
    return L.sub_(lam * log_p)


def _cubed(x: torch.Tensor, dim: int, min_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(centred x cubed, max(its L2 norm, min_norm)) along ``dim``."""
    x3 = (x - x.mean(dim=dim, keepdim=True)).pow_(3)
    return x3, x3.norm(dim=dim, keepdim=True).clamp_(min=min_norm)


def rank_reorder_chunk(P: torch.Tensor, key_t: torch.Tensor, vals: torch.Tensor,
                       idx: torch.Tensor, perms: torch.Tensor, cfg: RankReorderConfig
                       ) -> torch.Tensor:
    """Rank-reorder scores [c, M] of c neurons from their top values / clip indices [c, n_top].

    ``key_t`` is :func:`rank_key_table`, ``perms`` :func:`baseline_permutations`. The argsort
    of each concept's evidence over the top clips runs as one in-place numpy sort of packed
    integer keys (AVX-512 sort, ~15x faster than torch's segmented sort on 100-element rows).
    Inputs are finite, so the authors' nanmean is a mean.
    """
    c, n_top = idx.shape
    m = P.shape[1]
    vals = vals.double()  # |t_j - reorg_j|^3 sums reach 1e4: accumulate in float64
    avg = F.embedding_bag(idx, P.double(), mode="mean")  # [c, M] mean evidence of top clips
    if cfg.variant == "and":
        avg.clamp_(min=0)
    keys = key_t.index_select(1, idx.reshape(-1)).view(m, c, n_top)
    keys.bitwise_or_(torch.arange(n_top, dtype=keys.dtype))
    keys.numpy().sort(axis=-1)
    pos = keys.bitwise_and_((1 << _position_bits(n_top)) - 1)  # argsort [M, c, n_top]
    if cfg.variant == "clip_dissect":  # argsort twice = ranks
        ar = torch.arange(n_top, dtype=pos.dtype).expand(m, c, -1)
        pos = torch.empty_like(pos).scatter_(2, pos.long(), ar)
    if c * n_top >= 2**31:  # flat positions below would overflow int32
        pos = pos.long()
    asc = vals.flip(1).contiguous()
    pos.add_(torch.arange(0, c * n_top, n_top, dtype=pos.dtype).view(1, c, 1))
    reorg = asc.view(-1).index_select(0, pos.view(-1)).view(m, c, n_top).sub_(vals)
    err = reorg.abs_().pow_(cfg.p).sum(dim=2).div_(n_top).T
    base = (asc.unsqueeze(1) - asc[:, perms]).abs_().pow_(cfg.p).mean(dim=(1, 2))
    return -(err / base.unsqueeze(1)) / avg.pow(cfg.scale_p)


# ----- vectorised entry points -------------------------------------------------------------------
def similarities(
    P: torch.Tensor | np.ndarray,
    U: torch.Tensor | np.ndarray,
    cfg: SimilarityConfig | None = None,
    *,
    names: Iterable[str] = SIMILARITY_NAMES,
    population: Population | None = None,
    chunk_size: int = 4096,
    n_top: int | None = None,
) -> dict[str, torch.Tensor]:
    """Run several similarity functions, sharing one top-k selection per neuron chunk.

    Args:
        P: concept evidence [N, M] (clips x concepts), finite.
        U: activations [N, n] (clips x neurons), finite. Passing the transpose of a
            neuron-major [n, N] array (how ActivationTable stores values) avoids a copy per chunk.
        cfg: parameters of the five functions (default: the authors' values).
        names: functions to run, a subset of :data:`SIMILARITY_NAMES`.
        population: 'per_layer' or 'per_neuron' for log p(c); required with wpmi / soft_wpmi.
        chunk_size: neurons per chunk (bounds memory; results do not depend on it).
        n_top: override rank-reorder's number of top clips (default int(N * top_fraction)).

    Returns:
        name -> scores [n, M] (higher = better): float32, rank_reorder float64.

    Raises:
        ValueError: shapes disagree, non-finite inputs, unknown name, missing population.
    """
    cfg = cfg or SimilarityConfig()
    P, U = check_inputs(P, U, chunk_size)
    want = set(names)
    if unknown := want - set(SIMILARITY_NAMES):
        raise ValueError(f"names: unknown similarity functions {sorted(unknown)}")
    if {"wpmi", "soft_wpmi"} & want and population is None:
        raise ValueError("population ('per_layer' or 'per_neuron') is required for (soft-)WPMI")
    (n_clips, m), n = P.shape, U.shape[1]
    out = {name: torch.empty(n, m) for name in SIMILARITY_NAMES if name in want}
    k_w, k_s = min(cfg.wpmi.top_k, n_clips), min(cfg.soft_wpmi.top_k, n_clips)
    n_top = int(n_clips * cfg.rank_reorder.top_fraction) if n_top is None else n_top
    if not 0 <= n_top <= n_clips:
        raise ValueError(f"n_top must be in [0, {n_clips}], got {n_top}")
    ks = {"rank_reorder": n_top, "wpmi": k_w, "soft_wpmi": k_s}
    k_max = max([k for name, k in ks.items() if name in want], default=0)
    if "cos" in want:
        p_hat = P / P.norm(dim=0, keepdim=True)
    if "cos_cubed" in want:
        p_cub = torch.div(*_cubed(P, 0, cfg.cos_cubed.min_norm))
    if "wpmi" in want:
        log_q = concept_probs(P, cfg.wpmi.a).add_(cfg.wpmi.min_prob).log_()
        out["wpmi"] = torch.empty(n, m, dtype=torch.float64)
    if "soft_wpmi" in want:
        q_s, w = concept_probs(P, cfg.soft_wpmi.a), soft_weights(k_s, cfg.soft_wpmi)
        # a table of log(1 + w_i (Q - 1) + min_prob) for every (rank i, clip, concept) pays off
        # when there are more neurons than clips (fewer logs than per chunk) and it is small
        table = n > n_clips and k_s * n_clips * m * 8 <= SOFT_TABLE_MAX_BYTES
        if table:
            t = torch.mul(w.view(-1, 1, 1), (q_s - 1).unsqueeze(0))
            q_s = t.add_(1).add_(cfg.soft_wpmi.min_prob).log_().view(-1, m)
            offsets = torch.arange(k_s) * n_clips
        out["soft_wpmi"] = torch.empty(n, m, dtype=torch.float64)
    do_rr = "rank_reorder" in want and n_top > 0
    if "rank_reorder" in want:  # scores reach ~1e4: float64 keeps them exact to << 1e-5
        out["rank_reorder"] = torch.empty(n, m, dtype=torch.float64)
    if do_rr:
        key_t, perms = rank_key_table(P, n_top), baseline_permutations(n_top, cfg.rank_reorder)
    elif "rank_reorder" in want:
        out["rank_reorder"].fill_(float("nan"))  # no top clips: undefined (authors: NaN)
    with torch.no_grad():
        for j0 in range(0, n, chunk_size):
            j1 = min(j0 + chunk_size, n)
            uc = neuron_chunk(U, j0, j1)
            if "cos" in want:
                out["cos"][j0:j1] = (uc @ p_hat).div_(uc.norm(dim=1, keepdim=True))
            if "cos_cubed" in want:
                u3, norm = _cubed(uc, 1, cfg.cos_cubed.min_norm)
                out["cos_cubed"][j0:j1] = (u3 @ p_cub).div_(norm)
            if k_max == 0:
                continue
            vals, idx = top_sorted(uc, k_max)
            if do_rr:
                out["rank_reorder"][j0:j1] = rank_reorder_chunk(
                    P, key_t, vals[:, :n_top], idx[:, :n_top].contiguous(), perms,
                    cfg.rank_reorder)
            if "wpmi" in want:
                out["wpmi"][j0:j1] = F.embedding_bag(idx[:, :k_w].contiguous(), log_q, mode="sum")
            if "soft_wpmi" in want:
                out["soft_wpmi"][j0:j1] = _soft_chunk(q_s, idx[:, :k_s], w, table, offsets
                                                      if table else None, cfg.soft_wpmi)
    for name, lam in (("wpmi", cfg.wpmi.lam), ("soft_wpmi", cfg.soft_wpmi.lam)):
        if name in want and population is not None:
            out[name] = apply_population(out[name], lam, population).float()
    return out


def _soft_chunk(q: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, table: bool,
                offsets: torch.Tensor | None, cfg: SoftWpmiConfig) -> torch.Tensor:
    """Soft-WPMI log-likelihood L [c, M] (float64) of a chunk from its top-k clip indices."""
    if table and offsets is not None:
        return F.embedding_bag(idx + offsets, q, mode="sum")
    c, k = idx.shape
    g = q.index_select(0, idx.reshape(-1)).view(c, k, -1)
    return g.sub_(1).mul_(w.view(1, k, 1)).add_(1).add_(cfg.min_prob).log_().sum(dim=1)


def cos(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
        cfg: CosConfig | None = None, *, chunk_size: int = 4096) -> torch.Tensor:
    """Cosine of P and U columns over clips -> [n, M]; a zero-norm column gives NaN."""
    sim = SimilarityConfig(cos=cfg or CosConfig())
    return similarities(P, U, sim, names=["cos"], chunk_size=chunk_size)["cos"]


def cos_cubed(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
              cfg: CosCubedConfig | None = None, *, chunk_size: int = 4096) -> torch.Tensor:
    """Cosine of centred, cubed columns -> [n, M]; a constant (dead) neuron gives a zero row."""
    sim = SimilarityConfig(cos_cubed=cfg or CosCubedConfig())
    return similarities(P, U, sim, names=["cos_cubed"], chunk_size=chunk_size)["cos_cubed"]


def rank_reorder(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
                 cfg: RankReorderConfig | None = None, *, chunk_size: int = 4096,
                 n_top: int | None = None) -> torch.Tensor:
    """Negative normalised rank-reorder error -> [n, M] (0 = perfect order; NaN if n_top = 0)."""
    sim = SimilarityConfig(rank_reorder=cfg or RankReorderConfig())
    return similarities(P, U, sim, names=["rank_reorder"], chunk_size=chunk_size,
                        n_top=n_top)["rank_reorder"]


def wpmi(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
         cfg: WpmiConfig | None = None, *, population: Population,
         chunk_size: int = 4096) -> torch.Tensor:
    """WPMI -> [n, M]: L = sum over top-k clips of log(Q + min_prob), minus lam * log p(c)."""
    sim = SimilarityConfig(wpmi=cfg or WpmiConfig())
    return similarities(P, U, sim, names=["wpmi"], population=population,
                        chunk_size=chunk_size)["wpmi"]


def soft_wpmi(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
              cfg: SoftWpmiConfig | None = None, *, population: Population,
              chunk_size: int = 4096) -> torch.Tensor:
    """Soft WPMI -> [n, M]: L = sum_i log(1 + w_i (Q - 1) + min_prob), minus lam * log p(c)."""
    sim = SimilarityConfig(soft_wpmi=cfg or SoftWpmiConfig())
    return similarities(P, U, sim, names=["soft_wpmi"], population=population,
                        chunk_size=chunk_size)["soft_wpmi"]
