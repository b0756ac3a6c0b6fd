"""Near-tie-aware comparison of one ranked list (concepts) and one top-K set (clips).

Pure functions over Python sequences; :mod:`and_toolkit.compare.compare` calls them only for the
groups whose ranks or sets differ (the vectorised pre-filter drops identical ones).

The rule (derived in :mod:`and_toolkit.compare.tolerance`): each score x may move by tau(x) =
atol + rtol |x| between runs, so an order flip of two items c, d (c above d in A, d above c in
B) is a *near-tie*, not a change, when ``gap_A + gap_B <= tau(c) + tau(d)``. An item absent
from a side's stored top ranks scores at most that side's last stored score (the cut-off), which
bounds its gap from below; and since it may move only by its tau, it can be absent from a side
only if its score on the other side is within tau of that cut-off (``s_B(d) - tau(d) <= cut_A``
for an item d that entered B's top ranks; ``s_A(c) - tau(c) <= cut_B`` for one that left):
otherwise its flips are real. Missing or non-finite scores make every flip real.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Tau = Callable[[float], float]
"""tau(x): how far a number x may move between runs."""


@dataclass(frozen=True)
class Ranked:
    """One run's ranked items: ``items[r]`` at rank r, ``scores[r]`` its score (or None)."""

    items: tuple[str, ...]
    scores: tuple[float | None, ...]

    def rank(self, item: str) -> int | None:
        """Rank of an item, None when it is not among the stored ranks."""
        return self.items.index(item) if item in self.items else None

    def score_or_cut(self, item: str) -> float | None:
        """The item's score, or (absent) the last stored score, its upper bound."""
        r = self.rank(item)
        if r is not None:
            return self.scores[r]
        return self.scores[-1] if self.scores else None


@dataclass(frozen=True)
class RankedChange:
    """How a ranked list changed from A to B.

    Attributes:
        top1: the top-1 item changed and the swap is not a near-tie.
        moved: items involved in at least one real order flip, sorted.
        excused: order flips that were near-ties.
    """

    top1: bool
    moved: tuple[str, ...]
    excused: int


def _item(a: Ranked, b: Ranked, c: str, tau: Tau) -> tuple[float, float, float, bool]:
    """``(s_A, s_B, tau, fine)`` of one item: its scores (the cut-off where it is absent), its
    tau, and whether it is finite and, where absent, within tau of that side's cut-off."""
    x, y = a.score_or_cut(c), b.score_or_cut(c)
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return 0.0, 0.0, 0.0, False
    t = tau(max(abs(x), abs(y)))
    fine = ((c in a.items or y - t <= x)  # absent from A: s_B(c) - tau <= cut_A
            and (c in b.items or x - t <= y))  # absent from B: s_A(c) - tau <= cut_B
    return x, y, t, fine


def real_flip(a: Ranked, b: Ranked, hi_a: str, hi_b: str, tau: Tau) -> bool:
    """Whether "``hi_a`` above ``hi_b`` in A, ``hi_b`` above ``hi_a`` in B" is a real change
    (the module docstring's rule; missing / non-finite scores: real)."""
    xa, ya, ta, fine_a = _item(a, b, hi_a, tau)
    xb, yb, tb, fine_b = _item(a, b, hi_b, tau)
    if not (fine_a and fine_b):
        return True
    return (xa - xb) + (yb - ya) > ta + tb


def ranked_change(a: Ranked, b: Ranked, tau: Tau) -> RankedChange:
    """Compare two ranked lists (e.g. one neuron's top-5 concepts of one method x similarity).

    Every pair of items of either list whose relative order differs is a flip (an item absent
    from a list ranks below all its items; two absent items have no order). A flip is real
    unless it is a near-tie (module docstring); :func:`real_flip` is the same rule for one pair.
    """
    union = list(dict.fromkeys(a.items + b.items))
    n = len(union)
    pos_a = {c: i for i, c in enumerate(a.items)}
    pos_b = {c: i for i, c in enumerate(b.items)}
    absent = n + 1
    ra = [pos_a.get(c, absent) for c in union]
    rb = [pos_b.get(c, absent) for c in union]
    items = [_item(a, b, c, tau) for c in union]
    fa = [x for x, _, _, _ in items]
    fb = [y for _, y, _, _ in items]
    taus = [t for _, _, t, _ in items]
    ok = [fine for _, _, _, fine in items]
    moved: set[int] = set()
    excused = 0
    for i in range(n):
        rai, rbi = ra[i], rb[i]
        for j in range(i + 1, n):
            raj, rbj = ra[j], rb[j]
            if (rai == raj) or (rbi == rbj) or ((rai < raj) == (rbi < rbj)):
                continue  # both absent from a side (no order there), or the same order
            hi_a, hi_b = (i, j) if rai < raj else (j, i)
            gap = (fa[hi_a] - fa[hi_b]) + (fb[hi_b] - fb[hi_a])
            if not (ok[i] and ok[j]) or gap > taus[i] + taus[j]:
                moved.update((i, j))
            else:
                excused += 1
    top1 = False
    if a.items and b.items and a.items[0] != b.items[0]:
        top1 = real_flip(a, b, a.items[0], b.items[0], tau)
    elif bool(a.items) != bool(b.items):
        top1 = True
    return RankedChange(top1=top1, moved=tuple(sorted(union[i] for i in moved)),
                        excused=excused)


@dataclass(frozen=True)
class SetChange:
    """How a top-K clip set changed: raw Jaccard, Jaccard counting near-tie swaps as kept
    (``effective``), and the number of such swaps."""

    jaccard: float
    effective: float
    excused: int


def clip_set_change(ids_a: Sequence[str], values_a: Sequence[float], ids_b: Sequence[str],
                    values_b: Sequence[float], tau: Tau, *, descending: bool = True
                    ) -> SetChange:
    """Compare two top-K (``descending``) or bottom-K clip sets with their activations.

    A clip that left (in A only) and one that entered (in B only) form a near-tie swap when
    their distances past the K-th value of their own run (A's for the one that left, B's for
    the one that entered) sum to at most tau of each: ``g_A + g_B <= tau(v_A) + tau(v_B)``,
    and each is within its tau of the other run's K-th value (a clip can drop out of, or come
    into, the top-K only by moving past it). Leaving and entering clips are paired in order of
    distance (closest first).
    """
    sign = 1.0 if descending else -1.0
    sa, sb = set(ids_a), set(ids_b)
    inter, union = len(sa & sb), len(sa | sb)
    if union == 0:
        return SetChange(1.0, 1.0, 0)
    jac = inter / union
    if sa == sb:
        return SetChange(jac, jac, 0)
    cut_a = sign * float(values_a[-1]) if len(values_a) else math.nan
    cut_b = sign * float(values_b[-1]) if len(values_b) else math.nan
    va = dict(zip(ids_a, values_a, strict=False))
    vb = dict(zip(ids_b, values_b, strict=False))
    left = sorted((sign * float(va[c]) - cut_a, float(va[c])) for c in sa - sb
                  if sign * float(va[c]) - tau(float(va[c])) <= cut_b)
    entered = sorted((sign * float(vb[d]) - cut_b, float(vb[d])) for d in sb - sa
                     if sign * float(vb[d]) - tau(float(vb[d])) <= cut_a)
    excused = sum(1 for (ga, xa), (gb, xb) in zip(left, entered, strict=False)
                  if ga + gb <= tau(xa) + tau(xb))
    return SetChange(jac, (inter + excused) / (union - excused), excused)
