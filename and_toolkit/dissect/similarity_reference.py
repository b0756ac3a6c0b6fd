"""Per-neuron loop formulations of the five similarity functions (the reference).

Straightforward one-neuron-at-a-time versions of :mod:`and_toolkit.dissect.similarity`, kept
for the equivalence tests and the benchmark (the vectorised versions must match them).
"""

from __future__ import annotations

import torch

from and_toolkit.dissect.similarity import (
    CosConfig,
    CosCubedConfig,
    Population,
    RankReorderConfig,
    SoftWpmiConfig,
    WpmiConfig,
    _cubed,
    apply_population,
    baseline_permutations,
    check_inputs,
    concept_probs,
    soft_weights,
)


# ----- per-neuron loops (reference formulation; benchmarks and equivalence tests) --------------
def _top_loop(u: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    vals, idx = torch.sort(u, descending=True, stable=True)
    return vals[:k], idx[:k]


def cos_loop(P: torch.Tensor, U: torch.Tensor, cfg: CosConfig | None = None) -> torch.Tensor:
    """Per-neuron loop version of :func:`cos` (same contract)."""
    P, U = check_inputs(P, U, 1)
    p_hat = P / P.norm(dim=0, keepdim=True)
    return torch.stack([(U[:, j] / U[:, j].norm()) @ p_hat for j in range(U.shape[1])])


def cos_cubed_loop(P: torch.Tensor, U: torch.Tensor, cfg: CosCubedConfig | None = None
                   ) -> torch.Tensor:
    """Per-neuron loop version of :func:`cos_cubed` (same contract)."""
    min_norm = (cfg or CosCubedConfig()).min_norm
    P, U = check_inputs(P, U, 1)
    p_cub = torch.div(*_cubed(P, 0, min_norm))
    return torch.stack([torch.div(*_cubed(U[:, j], 0, min_norm)) @ p_cub
                        for j in range(U.shape[1])])


def rank_reorder_loop(P: torch.Tensor, U: torch.Tensor, cfg: RankReorderConfig | None = None
                      ) -> torch.Tensor:
    """Per-neuron loop version of :func:`rank_reorder` (torch argsort per neuron)."""
    cfg = cfg or RankReorderConfig()
    P, U = check_inputs(P, U, 1)
    n_top = int(P.shape[0] * cfg.top_fraction)
    if n_top == 0:
        return torch.full((U.shape[1], P.shape[1]), float("nan"))
    perms = baseline_permutations(n_top, cfg)
    rows = []
    for j in range(U.shape[1]):
        t, ids = _top_loop(U[:, j], n_top)
        t, s = t.double(), P[ids].double()  # [n_top], [n_top, M] evidence of the top clips
        avg = torch.relu(s.mean(dim=0)) if cfg.variant == "and" else s.mean(dim=0)
        order = torch.argsort(s, dim=0, stable=True)
        if cfg.variant == "clip_dissect":
            order = torch.argsort(order, dim=0, stable=True)
        asc = t.flip(0)
        err = (t.unsqueeze(1) - asc[order]).abs().pow(cfg.p)
        err = err.nanmean(dim=0) if cfg.variant == "and" else err.mean(dim=0)
        base = (asc.unsqueeze(0) - asc[perms]).abs().pow(cfg.p).mean()
        rows.append(-(err / base) / avg.pow(cfg.scale_p))
    return torch.stack(rows)


def wpmi_loop(P: torch.Tensor, U: torch.Tensor, cfg: WpmiConfig | None = None, *,
              population: Population) -> torch.Tensor:
    """Per-neuron loop version of :func:`wpmi` (same contract)."""
    cfg = cfg or WpmiConfig()
    P, U = check_inputs(P, U, 1)
    q, k = concept_probs(P, cfg.a), min(cfg.top_k, P.shape[0])
    L = torch.stack([torch.log(q[_top_loop(U[:, j], k)[1]] + cfg.min_prob).sum(dim=0)
                     for j in range(U.shape[1])])
    return apply_population(L, cfg.lam, population).float()


def soft_wpmi_loop(P: torch.Tensor, U: torch.Tensor, cfg: SoftWpmiConfig | None = None, *,
                   population: Population) -> torch.Tensor:
    """Per-neuron loop version of :func:`soft_wpmi` (same contract)."""
    cfg = cfg or SoftWpmiConfig()
    P, U = check_inputs(P, U, 1)
    q, k = concept_probs(P, cfg.a), min(cfg.top_k, P.shape[0])
    w = soft_weights(k, cfg).unsqueeze(1)
    L = torch.stack([torch.log(1 + w * (q[_top_loop(U[:, j], k)[1]] - 1) + cfg.min_prob)
                     .sum(dim=0) for j in range(U.shape[1])])
    return apply_population(L, cfg.lam, population).float()
