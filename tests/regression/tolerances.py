"""Tolerances of the dissection regression tests, derived from the computation.

Where machine differences come from. The regression inputs are exact (committed Parquet
activations and captions), so two machines can only disagree through float computations that
are not bitwise reproducible: reductions whose order depends on the SIMD kernel, the BLAS
blocking or the thread count (MiniLM's transformer, matrix products, sums, norms) and
vectorised transcendentals (exp / log / pow may differ by an ulp or two). IEEE +, -, *, / and
sqrt of the same operands are exactly rounded and reproduce bitwise (fused multiply-add
contraction aside, covered by the per-operation ulp terms below).

The error chain starts from one budget, the sentence-embedding error:

* ``embedding_error() = sqrt(d) * eps32`` (2.3e-6 for d = 384) bounds ``||e_A - e_B||_2`` for
  the unit MiniLM embedding of one sentence on two machines: every component may be off by
  eps32 in absolute terms, i.e. 16-32 ulps of a typical component (|e_k| ~ 1/sqrt(d) = 0.05),
  the reassociation error of one length-d float32 reduction on a unit-norm result
  (probabilistic bound sqrt(d) * eps32, Higham & Mary 2019). This is the chain's one model
  assumption: a 6-layer network's error has no a-priori bound without its condition numbers.
  Measured on this fixture over AVX512 / AVX2 / default ATen kernels, MKL AVX2 / SSE4.2,
  OpenBLAS Haswell / Nehalem and 1 / 2 threads: max 1.1e-6, half the budget.
* ``cosine_error() = 2 * embedding_error() + sqrt(d) * eps32`` (7.0e-6): the cosine of two unit
  embeddings moves by at most ||a - a'|| + ||b - b'|| (Cauchy-Schwarz) plus the dot product's
  own reassociation error, sqrt(d) eps32 sum_k |a_k b_k| <= sqrt(d) eps32. Measured: 7.2e-7.

Every float quantity downstream gets a first-order worst-case bound: with C the [N, M] cosine
matrix of captions x concept names, ``|d out| <= cosine_error() * sum_{i,k} |d out / d C_ik|``
with the Jacobian composed through the whole computation BEFORE taking absolute values (so
that e.g. softmax rows, whose derivatives sum to zero, and the per-layer log p(c), which
subtracts a weighted mean over neurons, cancel what they really cancel), plus each step's own
float32 rounding, bounded by its number of accumulated terms times eps32 times the magnitude
of those terms. The bounds are evaluated in float64 on this run's inputs: they scale with the
shapes and magnitudes of each quantity, nothing is fitted to one machine's diff. Evaluating a
bound at machine A's or machine B's inputs differs only at second order.

Decisions (top-k concepts, keep / drop at a cosine threshold, a summary's medoid) are compared
through the same bounds: an order or a threshold comparison whose two sides are within
tolerance may go either way, and the tests accept every such outcome and nothing else.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)
"""float32 machine epsilon, 2^-23 = 1.19e-7."""
EPS64 = float(np.finfo(np.float64).eps)
"""float64 machine epsilon, 2^-52 = 2.2e-16."""
TINY32 = float(np.finfo(np.float32).tiny)
"""Smallest normal float32, 1.2e-38: below it float32 keeps only absolute precision."""
MINILM_DIM = 384
"""Width d of all-MiniLM-L6-v2 sentence embeddings."""


def embedding_error(d: int = MINILM_DIM) -> float:
    """L2 bound of one unit sentence embedding's difference between two machines."""
    return math.sqrt(d) * EPS32


def cosine_error(d: int = MINILM_DIM) -> float:
    """Bound of one cosine's difference between two machines (unit embeddings of width d)."""
    return 2 * embedding_error(d) + math.sqrt(d) * EPS32


# ----- DB evidence P = softmax(scale * C) over concepts ------------------------------------------
def evidence_jacobian(P: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """d P_ij / d C_ik = scale * P_ij * (delta_jk - P_ik): float64 [N, M (j), M (k)].

    P_ij depends on row i of C only (one caption against the M concept names).
    """
    P = np.asarray(P, np.float64)
    return scale * P[:, :, None] * (np.eye(P.shape[1])[None] - P[:, None, :])


def evidence_rounding(P: np.ndarray) -> np.ndarray:
    """Own rounding of the float32 softmax, per element of P [N, M] (float64).

    exp: <= 2 ulp; the float32 sum of the M exponentials: <= M eps32 relative, whatever the
    order; the division: 1/2 ulp -> (M + 4) eps32 P_ij. + TINY32 for subnormal results.
    """
    P = np.asarray(P, np.float64)
    return (P.shape[1] + 4) * EPS32 * P + TINY32


def softmax_evidence_error(P: np.ndarray, scale: float = 100.0, d: int = MINILM_DIM
                           ) -> np.ndarray:
    """Bound [N, M] of the softmax100 evidence P (``db_evidence(..., 'softmax100')``).

    sum_k |d P_ij / d C_ik| = scale * P_ij * (|1 - P_ij| + sum_{k != j} P_ik)
    = 2 scale P_ij (1 - P_ij): the error is RELATIVE to P_ij (a probability of 1e-30 moves by
    ~1e-33, not by 1e-6) and vanishes at P = 0 or 1, where the softmax's own rounding
    (:func:`evidence_rounding`) takes over. With scale = 100 the cosine error is amplified by
    at most 2 * 100 * 1/4 = 50.
    """
    P = np.asarray(P, np.float64)
    return 2 * scale * cosine_error(d) * P * np.abs(1 - P) + evidence_rounding(P)


def rowsum_error(m: int) -> float:
    """Bound of |sum_j P_ij - 1| for one float32 softmax row of m entries.

    Normaliser: float32 sum of m positive terms (<= m eps32 relative, any order); each
    P_ij = e_ij / S adds 1/2 ulp; numpy's float32 sum of the m outputs adds <= m eps32.
    """
    return (2 * m + 2) * EPS32


def propagate(G: np.ndarray, P: np.ndarray, scale: float = 100.0, d: int = MINILM_DIM
              ) -> np.ndarray:
    """First-order bound of outputs with Jacobian ``G = d out / d P`` [..., N, M] wrt the evidence.

    cosine_error * sum_{i,k} |sum_j G[.., i, j] dP_ij/dC_ik| (composed before the absolute
    value) + sum_{i,j} |G[.., i, j]| * :func:`evidence_rounding`.
    """
    P = np.asarray(P, np.float64)
    gc = np.einsum("...ij,ijk->...ik", G, evidence_jacobian(P, scale))
    return (cosine_error(d) * np.abs(gc).sum(axis=(-2, -1))
            + (np.abs(G) * evidence_rounding(P)).sum(axis=(-2, -1)))


# ----- Module A: the five similarity functions ---------------------------------------------------
# Each ``*_error(P, U, ...)`` returns the bound [n, M] of the function's scores (n neurons x M
# concepts) for evidence P [N, M] and exact activations U [N, n]: propagate(Jacobian wrt P)
# plus the function's own rounding. Jacobians are [n, M, N, M] (score n, j; input i, j').
def _diag(g: np.ndarray) -> np.ndarray:
    """[n, M (j), N (i)] -> [n, M, N, M] with G[n, j, i, j'] = g[n, j, i] delta_jj'."""
    n, m, nc = g.shape
    out = np.zeros((n, m, nc, m))
    out[:, np.arange(m), :, np.arange(m)] = g.transpose(1, 0, 2)
    return out


def _unit_cols(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.linalg.norm(x, axis=0)
    return x / norm, norm


def cos_error(P: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Bound [n, M] of ``cos``: s_nj = u_n . p_j / (|u_n| |p_j|) over the N clips.

    d s_nj / d P_ij = (u^_in - s_nj p^_ij) / |p_j| (u^, p^ unit columns). Own rounding: the
    float32 matrix product and the two column norms are length-N reductions (<= N eps32
    relative each, any order) on a result of magnitude <= 1: + (3N + 4) eps32. This own
    rounding dominates the measured differences (the evidence error mostly sits on P ~ 0 / 1).
    """
    P, U = np.asarray(P, np.float64), np.asarray(U, np.float64)
    p_hat, p_norm = _unit_cols(P)
    u_hat, _ = _unit_cols(U)
    s = u_hat.T @ p_hat
    g = (u_hat.T[:, None, :] - s[:, :, None] * p_hat.T[None]) / p_norm[None, :, None]
    return propagate(_diag(g), P) + (3 * P.shape[0] + 4) * EPS32


def cos_cubed_error(P: np.ndarray, U: np.ndarray, min_norm: float = 1e-3) -> np.ndarray:
    """Bound [n, M] of ``cos_cubed``: s = u3^ . y / max(|y|, min_norm), y = (p - mean p)^3.

    d s / d y_l = (u3^_l - s y^_l) / |y| (or u3^_l / min_norm when the norm is clamped);
    d y_l / d p_i = 3 x_l^2 (delta_li - 1/N). Own rounding: the float32 centring means (N eps32
    mean|.| per element, then x3 through the cube: 3 x^2), the cube itself (2 ulp) and the
    product / norms as in :func:`cos_error`, for both the evidence and the neuron side.
    """
    P, U = np.asarray(P, np.float64), np.asarray(U, np.float64)
    nc = P.shape[0]

    def cubed(x: np.ndarray) -> tuple[np.ndarray, ...]:
        c = x - x.mean(axis=0)
        y = c**3
        norm = np.linalg.norm(y, axis=0)
        # element bound of y's own rounding (centring mean + cube)
        dy = 3 * c**2 * nc * EPS32 * np.abs(x).mean(axis=0) + 2 * EPS32 * np.abs(y)
        return c, y / np.maximum(norm, min_norm), np.maximum(norm, min_norm), dy, norm

    x, y_hat, den, dy_p, ny = cubed(P)
    _, u_hat, den_u, dy_u, nu = cubed(U)
    s = u_hat.T @ y_hat  # [n, M]
    free = (ny > min_norm).astype(float)
    ds_dy = (u_hat.T[:, None, :] - free[None, :, None] * s[:, :, None] * y_hat.T[None]) \
        / den[None, :, None]  # [n, M, N]
    g = 3 * ds_dy * (x.T**2)[None]
    g = g - g.sum(axis=2, keepdims=True) / nc  # the centring's -1/N
    own = np.einsum("njl,lj->nj", np.abs(ds_dy), dy_p)
    free_u = (nu > min_norm).astype(float)
    ds_du = (y_hat[:, None, :] - free_u[None, :, None] * s[None] * u_hat[:, :, None]) \
        / den_u[None, :, None]  # [N, n, M]
    own += np.einsum("lnj,ln->nj", np.abs(ds_du), dy_u)
    return propagate(_diag(g), P) + own + (3 * nc + 4) * EPS32


def top_clips(U: np.ndarray, k: int) -> np.ndarray:
    """Indices [n, k] of each neuron's top-k clips, descending, ties to the lower clip index.

    The activations are exact (read from Parquet), so this selection is machine independent.
    """
    return np.argsort(-np.asarray(U, np.float64).T, axis=1, kind="stable")[:, :k]


def _wpmi_like_error(P: np.ndarray, U: np.ndarray, population: str, score: np.ndarray,
                     k: int, a: float, lam: float, min_prob: float,
                     weights: np.ndarray | None) -> np.ndarray:
    """(soft-)WPMI bound; ``weights`` None = WPMI's log(Q + m), else soft-WPMI's w_r.

    L_nj = sum over neuron n's top-k clips (rank r, clip i) of h_r(Q_ij), Q = softmax(a P).
    With g_nij = Q_ij h_r'(Q_ij) (zero off the top-k): dL_nj / dP_ij' = a g_nij (delta_jj'
    - Q_ij'). per_layer: score = L - lam (logsumexp_n L_.j - log n), the derivative of the
    logsumexp is W = softmax over neurons, so d score / d P_ij' = a (g_nij - lam sum_n' W_n'j
    g_n'ij) (delta_jj' - Q_ij'); per_neuron: (1 - lam) a g_nij (...), identically 0 for lam = 1.
    This is a DIFFERENCE of large log terms (|L| ~ k |log Q| ~ 100s, the score ~ 1e-2): its error
    is absolute, set by the log terms' sensitivities, never relative to the small result. The
    sums run in float64 (+ k eps64 sum |h| per sum, negligible but kept), and the float32 cast
    of the result may land on a neighbouring float32 (+ eps32 |score|).
    """
    P, U = np.asarray(P, np.float64), np.asarray(U, np.float64)
    nc, m = P.shape
    n = U.shape[1]
    z = a * P
    q = np.exp(z - z.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    top = top_clips(U, k)
    g = np.zeros((n, nc, m))
    h = np.zeros((n, k, m))
    for r in range(k):
        qi = q[top[:, r]]  # [n, M]
        if weights is None:
            g[np.arange(n), top[:, r]] = qi / (qi + min_prob)
            h[:, r] = np.log(qi + min_prob)
        else:
            arg = 1 + weights[r] * (qi - 1) + min_prob
            g[np.arange(n), top[:, r]] = weights[r] * qi / arg
            h[:, r] = np.log(arg)
    L = h.sum(axis=1)
    if population == "per_neuron":
        gt = (1 - lam) * g
        own = abs(1 - lam) * k * EPS64 * np.abs(h).sum(axis=1)
    else:
        W = np.exp(L - L.max(axis=0))
        W /= W.sum(axis=0)
        gt = g - lam * np.einsum("nj,nij->ij", W, g)[None]
        own = k * EPS64 * np.abs(h).sum(axis=1) * (1 + lam)
    G = a * gt.transpose(0, 2, 1)[:, :, :, None] \
        * (np.eye(m)[None, :, None, :] - q[None, None, :, :])  # [n, j, i, j']
    return propagate(G, P) + own + EPS32 * np.abs(np.asarray(score, np.float64))


def wpmi_error(P: np.ndarray, U: np.ndarray, population: str, score: np.ndarray,
               top_k: int = 28, a: float = 2.0, lam: float = 0.6, min_prob: float = 1e-7
               ) -> np.ndarray:
    """Bound [n, M] of WPMI (defaults = ``WpmiConfig``): h(Q) = log(Q + min_prob)."""
    return _wpmi_like_error(P, U, population, score, min(top_k, P.shape[0]), a, lam, min_prob,
                            None)


def soft_wpmi_error(P: np.ndarray, U: np.ndarray, population: str, score: np.ndarray,
                    top_k: int = 100, a: float = 10.0, lam: float = 1.0,
                    min_prob: float = 1e-7, p_start: float = 0.998, p_end: float = 0.97
                    ) -> np.ndarray:
    """Bound [n, M] of soft-WPMI (defaults = ``SoftWpmiConfig``).

    h_r(Q) = log(1 + w_r (Q - 1) + min_prob), w_r = p_start - (r / k)(p_start - p_end).
    """
    k = min(top_k, P.shape[0])
    w = p_start - np.arange(k) / k * (p_start - p_end)
    return _wpmi_like_error(P, U, population, score, k, a, lam, min_prob, w)


def rank_reorder_error(P: np.ndarray, U: np.ndarray, score: np.ndarray,
                       top_fraction: float = 0.05, scale_p: float = 0.5
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(bound [n, M], unstable mask [n, M]) of rank-reorder (defaults = ``RankReorderConfig``).

    score = -R / avg^scale_p, where R (the normalised reorder error) depends on the exact
    activations and on the ORDER of the evidence over the n_top top clips only, and avg is the
    float64 mean of P over them. While that order holds the error is RELATIVE:
    d score / d P_ij = -scale_p score / (n_top avg) for i in the top clips. Two top clips whose evidence lies within their two bounds of
    each other (exact ties included: P = 1.0f ties break by position here, by value elsewhere)
    may come out in either order on another machine, which changes R discretely: such entries
    are flagged ``unstable``; the caller must accept the score of every such order. The float64
    arithmetic adds ~ n_top eps64 relative, the float32 cast of the scores in ``rank_concepts``
    up to eps32 relative.
    """
    P, U = np.asarray(P, np.float64), np.asarray(U, np.float64)
    score = np.asarray(score, np.float64)
    n_top = int(P.shape[0] * top_fraction)
    n, (nc, m) = U.shape[1], P.shape
    top = top_clips(U, n_top)
    avg = np.maximum(P[top].mean(axis=1), 0.0)  # [n, M]
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(avg > 0, -scale_p * score / (n_top * avg), 0.0)
    g = np.zeros((n, m, nc))
    for r in range(n_top):
        g[np.arange(n), :, top[:, r]] = coef
    bound = propagate(_diag(g), P) + (EPS32 + 16 * EPS64) * np.abs(score)
    tau = softmax_evidence_error(P)
    pt, tt = P[top], tau[top]  # [n, n_top, M]
    close = np.abs(pt[:, :, None] - pt[:, None]) <= tt[:, :, None] + tt[:, None]
    close &= ~np.eye(n_top, dtype=bool)[None, :, :, None]
    return bound, close.any(axis=(1, 2))


def rank_reorder_orders(p_top: np.ndarray, tau_top: np.ndarray) -> list[tuple[int, ...]]:
    """Every ascending order of the top clips' evidence reachable within the bounds.

    ``p_top``, ``tau_top``: evidence of one concept on the n_top top clips and its bounds.
    Returns permutations (positions, ascending evidence) consistent with every pair that is
    NOT within bounds of each other.
    """
    k = len(p_top)
    lo, hi = p_top - tau_top, p_top + tau_top
    out = []
    for perm in itertools.permutations(range(k)):
        # perm[r] is the clip at ascending position r: needs lo[perm[r]] <= hi[perm[r+1..]]
        if all(lo[perm[r]] <= hi[perm[s]] for r in range(k) for s in range(r + 1, k)):
            out.append(perm)
    return out


def realise_order(values: np.ndarray, perm: Sequence[int]) -> np.ndarray:
    """float32 values, each within a few ulps of ``values`` sorted, strictly ascending along perm.

    Used to evaluate the library on a reachable alternative order: the clip ``perm[r]`` gets
    the r-th smallest value, nudged up by float32 ulps where needed so the order is strict.
    """
    v = np.sort(np.asarray(values, np.float32))
    out = np.empty(len(v), np.float32)
    prev = np.float32(-np.inf)
    for r, clip in enumerate(perm):
        cur = max(v[r], np.nextafter(prev, np.float32(np.inf)))
        out[clip] = prev = cur
    return out


# ----- decisions ---------------------------------------------------------------------------------
def feasible_order(order: Sequence[int], scores: np.ndarray, tol: np.ndarray) -> bool:
    """Can ranking ``order`` (best first, a top-k prefix) arise from scores within ``tol``?

    True iff some s' with |s' - scores| <= tol (NaN ranks as -inf, as ``rank_concepts``) has
    a descending order starting with ``order`` (equal values in either order). For intervals
    a chain is feasible iff the greedy assignment works: walk ``order`` giving each the
    largest value not above its predecessor; every other candidate must then fit below.
    """
    s = np.asarray(scores, np.float64)
    nan = np.isnan(s)
    s = np.where(nan, -np.inf, s)
    t = np.where(nan, 0.0, np.asarray(tol, np.float64))
    lo, hi = s - t, s + t
    if len(set(order)) != len(order):
        return False
    prev = np.inf
    for c in order:
        cur = min(hi[c], prev)
        if cur < lo[c]:
            return False
        prev = cur
    rest = np.setdiff1d(np.arange(len(s)), np.asarray(list(order), dtype=np.int64))
    return bool(np.all(lo[rest] <= prev))


def medoid_tolerance(n_members: int, d: int = MINILM_DIM) -> float:
    """Bound of a medoid score, the sum of a member's n - 1 cosines with the others."""
    return (n_members - 1) * cosine_error(d)
