"""The near-tie rules of ``and_toolkit.compare.ties`` on hand-made lists (no run needed)."""

from __future__ import annotations

import math

from and_toolkit.compare.ties import Ranked, clip_set_change, ranked_change
from and_toolkit.compare.tolerance import PRESETS

TAU = PRESETS["default"].score_tol  # 2^-12 (1 + |x|)
EXACT = PRESETS["strict"].score_tol


def test_identical_lists_do_not_change() -> None:
    a = Ranked(("dog", "cat", "cow"), (0.9, 0.5, 0.1))
    assert ranked_change(a, a, TAU).top1 is False and ranked_change(a, a, TAU).moved == ()


def test_a_real_swap_is_a_top1_change_and_a_near_tie_is_not() -> None:
    a = Ranked(("dog", "cat", "cow"), (0.9, 0.5, 0.1))
    b = Ranked(("cat", "dog", "cow"), (0.9, 0.5, 0.1))
    change = ranked_change(a, b, TAU)
    assert change.top1 and change.moved == ("cat", "dog") and change.excused == 0
    a = Ranked(("dog", "cat", "cow"), (0.5, 0.5 - 1e-5, 0.1))
    b = Ranked(("cat", "dog", "cow"), (0.5, 0.5 - 1e-5, 0.1))
    change = ranked_change(a, b, TAU)
    assert not change.top1 and change.moved == () and change.excused == 1
    assert ranked_change(a, b, EXACT).top1  # strict: any flip of unequal scores is real


def test_items_leaving_the_top_ranks_use_the_cut_off() -> None:
    # "cow" leaves the stored top-2 for "pig": a near-tie only if both sit at the cut-off
    a = Ranked(("dog", "cow"), (0.9, 0.3))
    near = Ranked(("dog", "pig"), (0.9, 0.3 + 1e-5))
    far = Ranked(("dog", "pig"), (0.9, 0.6))
    assert ranked_change(a, near, TAU).moved == ()
    assert ranked_change(a, far, TAU).moved == ("cow", "pig")
    assert not ranked_change(a, far, TAU).top1


def test_missing_or_nan_scores_make_every_flip_real() -> None:
    a = Ranked(("dog", "cat"), (None, None))
    b = Ranked(("cat", "dog"), (None, None))
    assert ranked_change(a, b, TAU).top1
    a = Ranked(("dog", "cat"), (math.nan, 0.5))
    b = Ranked(("cat", "dog"), (0.5, math.nan))
    assert ranked_change(a, b, TAU).top1
    assert ranked_change(Ranked((), ()), b, TAU).top1  # a group only one run has


def test_clip_sets_jaccard_and_boundary_near_ties() -> None:
    tau = PRESETS["default"].activation_tol
    a_ids, a_vals = ["a", "b", "c"], [3.0, 2.0, 1.0]
    same = clip_set_change(a_ids, a_vals, ["c", "b", "a"], [1.0, 2.0, 3.0], tau)
    assert same.jaccard == same.effective == 1.0
    # "c" (at the cut-off) swapped for "d" just below it: a near-tie, counted as kept
    tie = clip_set_change(a_ids, a_vals, ["a", "b", "d"], [3.0, 2.0, 1.0 - 1e-6], tau)
    assert tie.jaccard == 0.5 and tie.effective == 1.0 and tie.excused == 1
    # "a" (the top clip) replaced: real
    real = clip_set_change(a_ids, a_vals, ["d", "b", "c"], [3.0, 2.0, 1.0], tau)
    assert real.effective == 0.5 and real.excused == 0
    # bottom-K: ascending values, the same rule mirrored
    low = clip_set_change(["a", "b"], [-3.0, -1.0], ["a", "e"], [-3.0, -1.0 + 1e-6], tau,
                          descending=False)
    assert low.effective == 1.0
