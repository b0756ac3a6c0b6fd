"""Module A similarity functions: concept evidence P [N, M] x activations U [N, n] -> [n, M].

Five functions (reference-spec §3.2): ``cos``, ``cos_cubed``, ``rank_reorder``, ``wpmi`` and
``soft_wpmi``, pure CPU torch, vectorised over chunks of neurons. Memory is bounded by one chunk
(``chunk_size * k * M`` gathered values, never N x M x n). :func:`similarities` runs several at
once and shares one top-k selection per chunk. ``*_loop`` variants are the plain per-neuron
formulations (as in the authors' code) for benchmarks and equivalence tests.

Top clips of a neuron are ranked by activation, ties broken by the lower clip index; the
rank-reorder argsort breaks ties by the lower top-list position. Both rules are used by the
vectorised and loop versions alike, so results never depend on the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

Population = Literal["per_layer", "per_neuron"]
SIMILARITY_NAMES: tuple[str, ...] = ("cos", "cos_cubed", "rank_reorder", "wpmi", "soft_wpmi")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CosConfig(_Frozen):
    """Plain cosine: L2-normalise P and U over clips (no eps, no centring). No parameters."""


class CosCubedConfig(_Frozen):
    """Cosine of centred, cubed columns (CLIP-Dissect ``cos_similarity_cubed``)."""

    min_norm: float = Field(1e-3, gt=0, description="Lower clamp of a column's L2 norm.")


class RankReorderConfig(_Frozen):
    """Rank-reorder error of the top activating clips."""

    p: float = Field(3.0, gt=0, description="Exponent of the absolute error.")
    top_fraction: float = Field(0.05, gt=0, le=1, description="n_top = int(N * top_fraction).")
    scale_p: float = Field(0.5, description="Error is divided by avg_c ** scale_p.")
    variant: Literal["and", "clip_dissect"] = Field(
        "and", description="'and': single argsort, ReLU(avg), nanmean (authors' AND code); "
        "'clip_dissect': double argsort (ranks), plain mean, no ReLU.")
    n_permutations: int = Field(5, ge=1, description="Random permutations for the normaliser B.")
    seed: int = Field(0, description="Seed of the torch.Generator drawing the permutations.")


class WpmiConfig(_Frozen):
    """Weighted pointwise mutual information."""

    top_k: int = Field(28, ge=1, description="Top clips per neuron (clamped to N).")
    a: float = Field(2.0, description="Softmax scale over concepts: Q = softmax(a * P).")
    lam: float = Field(0.6, description="Weight of log p(c).")
    min_prob: float = Field(1e-7, ge=0, description="Added inside the log.")


class SoftWpmiConfig(_Frozen):
    """Soft WPMI: clip rank i weighted by w_i = p_start - (i / k) (p_start - p_end)."""

    top_k: int = Field(100, ge=1, description="Top clips per neuron (clamped to N).")
    a: float = Field(10.0, description="Softmax scale over concepts: Q = softmax(a * P).")
    lam: float = Field(1.0, description="Weight of log p(c).")
    min_prob: float = Field(1e-7, ge=0, description="Added inside the log.")
    p_start: float = Field(0.998, ge=0, le=1, description="Weight of the top clip.")
    p_end: float = Field(0.97, ge=0, le=1, description="Weight approached by the k-th clip.")

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
def as_matrix(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    """Return ``x`` as a 2-D float32 CPU tensor (no copy when already one).

    Raises:
        ValueError: ``x`` is not 2-D or has an empty dimension (message names ``name``).
    """
    t = torch.as_tensor(x).to(device="cpu", dtype=torch.float32)
    if t.ndim != 2 or 0 in t.shape:
        raise ValueError(f"{name}: expected a non-empty 2-D matrix, got shape {tuple(t.shape)}")
    return t


def _check(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray, chunk_size: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    P, U = as_matrix(P, "P"), as_matrix(U, "U")
    if P.shape[0] != U.shape[0]:
        raise ValueError(f"P has {P.shape[0]} clips (rows) but U has {U.shape[0]}")
    if not bool(torch.isfinite(P).all()):
        raise ValueError("P: concept evidence contains NaN or inf")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return P, U


def _neuron_chunk(U: torch.Tensor, j0: int, j1: int) -> torch.Tensor:
    """Activations of neurons j0..j1-1 as a contiguous [c, N] tensor; rejects non-finite values."""
    uc = U[:, j0:j1].T.contiguous()
    bad = ~torch.isfinite(uc).all(dim=1)
    if bool(bad.any()):
        raise ValueError(f"U: neuron {j0 + int(bad.nonzero()[0])} has NaN or inf activations")
    return uc


def top_sorted(uc: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` activations of each row, descending; ties -> lower clip index first.

    Args:
        uc: activations [c, N] (one row per neuron).
        k: number of clips, 0 <= k <= N.

    Returns:
        (values [c, k] float32, clip indices [c, k] int64).
    """
    vals, idx = torch.topk(uc, k, dim=1, largest=True, sorted=True)
    if k == 0:
        return vals, idx
    ties = (uc >= vals[:, -1:]).sum(dim=1) > k  # another clip equals the k-th value
    ties |= (vals[:, 1:] == vals[:, :-1]).any(dim=1)  # ties inside the list: order unspecified
    if bool(ties.any()):
        rows = ties.nonzero().squeeze(1)
        sv, si = torch.sort(uc[rows], dim=1, descending=True, stable=True)
        vals[rows], idx[rows] = sv[:, :k], si[:, :k]
    return vals, idx


def dense_rank(P: torch.Tensor, n_top: int) -> torch.Tensor:
    """Dense rank of each column of P (equal values share a rank) [N, M].

    The dtype is int32 when a packed key (rank << bits(n_top) | position) fits in 31 bits,
    else int64.
    """
    vals, order = torch.sort(P, dim=0, stable=True)
    new = torch.ones_like(vals, dtype=torch.int64)
    new[1:] = (vals[1:] != vals[:-1]).to(torch.int64)
    rank = torch.empty_like(order).scatter_(0, order, new.cumsum(dim=0) - 1)
    fits = (P.shape[0] - 1).bit_length() + _position_bits(n_top) <= 31
    return rank.to(torch.int32) if fits else rank


def _position_bits(n_top: int) -> int:
    return max(1, (n_top - 1).bit_length())


def baseline_permutations(n_top: int, cfg: RankReorderConfig) -> torch.Tensor:
    """The seeded permutations [n_permutations, n_top] used by rank-reorder's normaliser B.

    One set is shared by every neuron (the authors draw 5 unseeded ones per neuron; B only
    rescales a neuron's row), so a neuron's score does not depend on the others in the call.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    return torch.stack([torch.randperm(n_top, generator=g) for _ in range(cfg.n_permutations)])


def soft_weights(k: int, cfg: SoftWpmiConfig) -> torch.Tensor:
    """Soft-WPMI weights w_i = p_start - (i / k)(p_start - p_end), i = 0..k-1, float32 [k]."""
    return cfg.p_start - torch.arange(k, dtype=torch.float32) / k * (cfg.p_start - cfg.p_end)


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


def _cubed_normalised(x: torch.Tensor, dim: int, min_norm: float) -> torch.Tensor:
    x = x - x.mean(dim=dim, keepdim=True)
    x = x * x * x
    return x / x.norm(dim=dim, keepdim=True).clamp(min=min_norm)


def rank_reorder_chunk(P: torch.Tensor, rank_P: torch.Tensor, vals: torch.Tensor,
                       idx: torch.Tensor, perms: torch.Tensor, cfg: RankReorderConfig
                       ) -> torch.Tensor:
    """Rank-reorder scores [c, M] of c neurons from their top values / clip indices [c, n_top].

    ``rank_P`` is :func:`dense_rank` of P, ``perms`` :func:`baseline_permutations`.

    The per-column argsort runs as one numpy sort of packed integer keys (dense rank of the
    evidence << bits | position), which orders by value, ties by position, ~15x faster than
    torch's segmented sort on 100-element rows.
    """
    c, n_top = idx.shape
    m = P.shape[1]
    flat = idx.reshape(-1)
    avg = P.index_select(0, flat).view(c, n_top, m).mean(dim=1)
    if cfg.variant == "and":
        avg.clamp_(min=0)
    bits = _position_bits(n_top)
    keys = rank_P.index_select(0, flat).view(c, n_top, m).transpose(1, 2).contiguous()
    keys.bitwise_left_shift_(bits).bitwise_or_(torch.arange(n_top, dtype=keys.dtype))
    arr = keys.numpy()
    arr.sort(axis=-1)  # in place, shares memory with keys
    order = keys.bitwise_and_((1 << bits) - 1).long()  # [c, M, n_top]: argsort of s
    if cfg.variant == "clip_dissect":  # argsort twice = ranks
        ar = torch.arange(n_top).expand(c, m, n_top)
        order = torch.empty_like(order).scatter_(2, order, ar)
    asc = vals.flip(1)
    reorg = torch.gather(asc.unsqueeze(1).expand(c, m, n_top), 2, order)
    diff = reorg.sub_(vals.unsqueeze(1)).abs_().pow_(cfg.p)
    err = diff.nanmean(dim=2) if cfg.variant == "and" else diff.mean(dim=2)
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
    chunk_size: int = 2048,
    n_top: int | None = None,
) -> dict[str, torch.Tensor]:
    """Run several similarity functions, sharing one top-k selection per neuron chunk.

    Args:
        P: concept evidence [N, M] (clips x concepts), finite.
        U: activations [N, n] (clips x neurons), finite.
        cfg: parameters of the five functions (default: the authors' values).
        names: functions to run, a subset of :data:`SIMILARITY_NAMES`.
        population: 'per_layer' or 'per_neuron' for log p(c); required with wpmi / soft_wpmi.
        chunk_size: neurons per chunk (bounds memory; results do not depend on it).
        n_top: override rank-reorder's number of top clips (default int(N * top_fraction)).

    Returns:
        name -> scores [n, M] float32 (higher = better).

    Raises:
        ValueError: shapes disagree, non-finite inputs, unknown name, missing population.
    """
    cfg = cfg or SimilarityConfig()
    P, U = _check(P, U, chunk_size)
    wanted = list(dict.fromkeys(names))
    if unknown := set(wanted) - set(SIMILARITY_NAMES):
        raise ValueError(f"names: unknown similarity functions {sorted(unknown)}")
    if {"wpmi", "soft_wpmi"} & set(wanted) and population is None:
        raise ValueError("population ('per_layer' or 'per_neuron') is required for (soft-)WPMI")
    n_clips, m = P.shape
    n = U.shape[1]
    out = {name: torch.empty(n, m) for name in wanted}
    k_w, k_s = min(cfg.wpmi.top_k, n_clips), min(cfg.soft_wpmi.top_k, n_clips)
    n_top = int(n_clips * cfg.rank_reorder.top_fraction) if n_top is None else n_top
    if not 0 <= n_top <= n_clips:
        raise ValueError(f"n_top must be in [0, {n_clips}], got {n_top}")
    ks = {"rank_reorder": n_top, "wpmi": k_w, "soft_wpmi": k_s}
    k_max = max([ks[name] for name in wanted if name in ks], default=0)
    if "cos" in wanted:
        p_hat = P / P.norm(dim=0, keepdim=True)
    if "cos_cubed" in wanted:
        p_cub = _cubed_normalised(P, 0, cfg.cos_cubed.min_norm)
    if "wpmi" in wanted:
        log_q = torch.softmax(cfg.wpmi.a * P, dim=1).add_(cfg.wpmi.min_prob).log_()
    if "soft_wpmi" in wanted:
        q_s, w = torch.softmax(cfg.soft_wpmi.a * P, dim=1), soft_weights(k_s, cfg.soft_wpmi)
    do_rr = "rank_reorder" in wanted and n_top > 0
    if do_rr:
        rank_p, perms = dense_rank(P, n_top), baseline_permutations(n_top, cfg.rank_reorder)
    elif "rank_reorder" in wanted:
        out["rank_reorder"].fill_(float("nan"))  # no top clips: undefined (authors: NaN)
    with torch.no_grad():
        for j0 in range(0, n, chunk_size):
            j1 = min(j0 + chunk_size, n)
            uc = _neuron_chunk(U, j0, j1)
            if "cos" in wanted:
                out["cos"][j0:j1] = (uc @ p_hat).div_(uc.norm(dim=1, keepdim=True))
            if "cos_cubed" in wanted:
                out["cos_cubed"][j0:j1] = _cubed_normalised(uc, 1, cfg.cos_cubed.min_norm) @ p_cub
            if k_max == 0:
                continue
            vals, idx = top_sorted(uc, k_max)
            c = j1 - j0
            if do_rr:
                out["rank_reorder"][j0:j1] = rank_reorder_chunk(
                    P, rank_p, vals[:, :n_top], idx[:, :n_top], perms, cfg.rank_reorder)
            if "wpmi" in wanted:
                g = log_q.index_select(0, idx[:, :k_w].reshape(-1)).view(c, k_w, m)
                out["wpmi"][j0:j1] = g.sum(dim=1)
            if "soft_wpmi" in wanted:
                g = q_s.index_select(0, idx[:, :k_s].reshape(-1)).view(c, k_s, m)
                g.sub_(1).mul_(w.view(1, k_s, 1)).add_(1).add_(cfg.soft_wpmi.min_prob).log_()
                out["soft_wpmi"][j0:j1] = g.sum(dim=1)
    if "wpmi" in wanted:
        apply_population(out["wpmi"], cfg.wpmi.lam, population)  # type: ignore[arg-type]
    if "soft_wpmi" in wanted:
        apply_population(out["soft_wpmi"], cfg.soft_wpmi.lam, population)  # type: ignore[arg-type]
    return out


def cos(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
        cfg: CosConfig | None = None, *, chunk_size: int = 2048) -> torch.Tensor:
    """Cosine of P and U columns over clips -> [n, M]; a zero-norm column gives NaN."""
    sim = SimilarityConfig(cos=cfg or CosConfig())
    return similarities(P, U, sim, names=["cos"], chunk_size=chunk_size)["cos"]


def cos_cubed(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
              cfg: CosCubedConfig | None = None, *, chunk_size: int = 2048) -> torch.Tensor:
    """Cosine of centred, cubed columns -> [n, M]; a constant (dead) neuron gives a zero row."""
    sim = SimilarityConfig(cos_cubed=cfg or CosCubedConfig())
    return similarities(P, U, sim, names=["cos_cubed"], chunk_size=chunk_size)["cos_cubed"]


def rank_reorder(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
                 cfg: RankReorderConfig | None = None, *, chunk_size: int = 2048,
                 n_top: int | None = None) -> torch.Tensor:
    """Negative normalised rank-reorder error -> [n, M] (0 = perfect order; NaN if n_top = 0)."""
    sim = SimilarityConfig(rank_reorder=cfg or RankReorderConfig())
    return similarities(P, U, sim, names=["rank_reorder"], chunk_size=chunk_size,
                        n_top=n_top)["rank_reorder"]


def wpmi(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
         cfg: WpmiConfig | None = None, *, population: Population,
         chunk_size: int = 2048) -> torch.Tensor:
    """WPMI -> [n, M]: L = sum over top-k clips of log(Q + min_prob), minus lam * log p(c)."""
    sim = SimilarityConfig(wpmi=cfg or WpmiConfig())
    return similarities(P, U, sim, names=["wpmi"], population=population,
                        chunk_size=chunk_size)["wpmi"]


def soft_wpmi(P: torch.Tensor | np.ndarray, U: torch.Tensor | np.ndarray,
              cfg: SoftWpmiConfig | None = None, *, population: Population,
              chunk_size: int = 2048) -> torch.Tensor:
    """Soft WPMI -> [n, M]: L = sum_i log(1 + w_i (Q - 1) + min_prob), minus lam * log p(c)."""
    sim = SimilarityConfig(soft_wpmi=cfg or SoftWpmiConfig())
    return similarities(P, U, sim, names=["soft_wpmi"], population=population,
                        chunk_size=chunk_size)["soft_wpmi"]


# ----- per-neuron loops (reference formulation; benchmarks and equivalence tests) --------------
def _top_loop(u: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    vals, idx = torch.sort(u, descending=True, stable=True)
    return vals[:k], idx[:k]


def cos_loop(P: torch.Tensor, U: torch.Tensor, cfg: CosConfig | None = None) -> torch.Tensor:
    """Per-neuron loop version of :func:`cos` (same contract)."""
    P, U = _check(P, U, 1)
    p_hat = P / P.norm(dim=0, keepdim=True)
    return torch.stack([(U[:, j] / U[:, j].norm()) @ p_hat for j in range(U.shape[1])])


def cos_cubed_loop(P: torch.Tensor, U: torch.Tensor, cfg: CosCubedConfig | None = None
                   ) -> torch.Tensor:
    """Per-neuron loop version of :func:`cos_cubed` (same contract)."""
    cfg = cfg or CosCubedConfig()
    P, U = _check(P, U, 1)
    p_cub = _cubed_normalised(P, 0, cfg.min_norm)
    return torch.stack([_cubed_normalised(U[:, j], 0, cfg.min_norm) @ p_cub
                        for j in range(U.shape[1])])


def rank_reorder_loop(P: torch.Tensor, U: torch.Tensor, cfg: RankReorderConfig | None = None
                      ) -> torch.Tensor:
    """Per-neuron loop version of :func:`rank_reorder` (torch argsort per neuron)."""
    cfg = cfg or RankReorderConfig()
    P, U = _check(P, U, 1)
    n_top = int(P.shape[0] * cfg.top_fraction)
    if n_top == 0:
        return torch.full((U.shape[1], P.shape[1]), float("nan"))
    perms = baseline_permutations(n_top, cfg)
    rows = []
    for j in range(U.shape[1]):
        t, ids = _top_loop(U[:, j], n_top)
        s = P[ids].T  # [M, n_top]: evidence of the top clips, per concept
        avg = s.mean(dim=1)
        avg = torch.relu(avg) if cfg.variant == "and" else avg
        order = torch.argsort(s, dim=1, stable=True)
        if cfg.variant == "clip_dissect":
            order = torch.argsort(order, dim=1, stable=True)
        asc = t.flip(0)
        err = (t.unsqueeze(0) - asc[order]).abs().pow(cfg.p)
        err = err.nanmean(dim=1) if cfg.variant == "and" else err.mean(dim=1)
        base = (asc.unsqueeze(0) - asc[perms]).abs().pow(cfg.p).mean()
        rows.append(-(err / base) / avg.pow(cfg.scale_p))
    return torch.stack(rows)


def wpmi_loop(P: torch.Tensor, U: torch.Tensor, cfg: WpmiConfig | None = None, *,
              population: Population) -> torch.Tensor:
    """Per-neuron loop version of :func:`wpmi` (same contract)."""
    cfg = cfg or WpmiConfig()
    P, U = _check(P, U, 1)
    q = torch.softmax(cfg.a * P, dim=1)
    k = min(cfg.top_k, P.shape[0])
    L = torch.stack([torch.log(q[_top_loop(U[:, j], k)[1]] + cfg.min_prob).sum(dim=0)
                     for j in range(U.shape[1])])
    return apply_population(L, cfg.lam, population)


def soft_wpmi_loop(P: torch.Tensor, U: torch.Tensor, cfg: SoftWpmiConfig | None = None, *,
                   population: Population) -> torch.Tensor:
    """Per-neuron loop version of :func:`soft_wpmi` (same contract)."""
    cfg = cfg or SoftWpmiConfig()
    P, U = _check(P, U, 1)
    q = torch.softmax(cfg.a * P, dim=1)
    k = min(cfg.top_k, P.shape[0])
    w = soft_weights(k, cfg).unsqueeze(1)
    L = torch.stack([torch.log(1 + w * (q[_top_loop(U[:, j], k)[1]] - 1) + cfg.min_prob)
                     .sum(dim=0) for j in range(U.shape[1])])
    return apply_population(L, cfg.lam, population)
