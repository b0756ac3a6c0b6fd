"""Tests of Module B: the paper's rule vs the authors' loop, on hand-set embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from and_toolkit.backends.encoders import CachedEncoder, HashingEncoder, LookupEncoder
from and_toolkit.dissect.calibrate import CalibrationConfig, calibrate_many, calibrate_points

E1, E2, E3 = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]

# High points A, B match low point X (cos 1); C matches nothing (cos 0); D matches Y (cos 1).
VECTORS = {"A": E1, "B": E1, "C": E3, "D": E2, "X": E1, "Y": E2,
           "P": [0.8, 0.6, 0.0],   # cos(P, X) = 0.8: dropped at t=0.7 and t=0.5
           "Q": [0.6, 0.8, 0.0]}   # cos(Q, X) = 0.6: kept at t=0.7, dropped at t=0.5
PAPER = CalibrationConfig()
REF = CalibrationConfig(compat="reference")


def run(high: list[str], low: list[str], cfg: CalibrationConfig):
    return calibrate_many([high], [low], LookupEncoder(VECTORS, "lk"), cfg)[0]


def test_defaults() -> None:
    assert (PAPER.rule, PAPER.t) == ("paper", 0.7)
    assert (REF.rule, REF.t) == ("reference", 0.5)
    assert CalibrationConfig(compat="reference", threshold=0.9).t == 0.9


def test_paper_rule_drops_every_high_point_close_to_any_low_point() -> None:
    out = run(["A", "B", "C", "D"], ["X", "Y"], PAPER)
    assert out.kept == ("C",)
    assert out.dropped == ("A", "B", "D")
    assert out.dropped_match == ("X", "X", "Y")
    assert out.dropped_cos == pytest.approx((1.0, 1.0, 1.0))
    assert (out.threshold, out.rule, out.encoder) == (0.7, "paper", "lk")


def test_reference_loop_skips_misaligns_and_leaves_the_tail() -> None:
    # Hand trace of the authors' loop over H=[A,B,C,D], L=[X,Y] with E_h, E_l fixed:
    # k=0: a=A; m=0 b=X cos(E_h[0],E_l[0])=1 > .5 -> remove A from H, X from L -> H=[B,C,D],
    #      L=[Y]; inner loop ends (m=1 >= len(L)).
    # k=1: a=H[1]=C (B is skipped), compared with E_h[1] (= B's vector) against
    #      b=L[0]=Y with E_l[0] (= X's vector): cos=1 -> C dropped although it is orthogonal
    #      to every low point; Y removed -> H=[B,D], L=[].
    # k=2: 2 >= len(H): loop ends; B and D never examined, so kept.
    out = run(["A", "B", "C", "D"], ["X", "Y"], REF)
    assert out.kept == ("B", "D")
    assert out.dropped == ("A", "C")
    assert out.dropped_match == ("X", "Y")
    assert out.dropped_cos == pytest.approx((1.0, 1.0))
    assert (out.threshold, out.rule) == (0.5, "reference")


def test_thresholds_are_strict_and_differ_by_rule() -> None:
    paper = run(["P", "Q"], ["X"], PAPER)
    assert paper.kept == ("Q",) and paper.dropped_cos == pytest.approx((0.8,))
    # Reference: P matches X -> P and X removed; Q is skipped (and X is gone anyway).
    ref = run(["P", "Q"], ["X"], REF)
    assert ref.kept == ("Q",) and ref.dropped == ("P",)
    ref_q_first = run(["Q", "P"], ["X"], REF)  # order-dependent: now Q goes, P survives
    assert ref_q_first.kept == ("P",) and ref_q_first.dropped_cos == pytest.approx((0.6,))
    # cos exactly equal to t is kept (strict >).
    assert run(["A"], ["X"], CalibrationConfig(threshold=1.0)).kept == ("A",)


def test_duplicates_paper_drops_all_reference_drops_one() -> None:
    # Reference, H = [A, C, A], L = [X]: k=0 A matches X -> H.remove("A") -> [C, A], X removed
    # from L. k=1: the second A (C is skipped) meets an empty L. Both C and the copy survive.
    out = run(["A", "C", "A"], ["X"], REF)
    assert out.kept == ("C", "A") and out.dropped == ("A",)
    paper = run(["A", "C", "A"], ["X"], PAPER)
    assert paper.kept == ("C",) and paper.dropped == ("A", "A")


def test_empty_sides() -> None:
    for cfg in (PAPER, REF):
        assert run(["A", "B"], [], cfg).kept == ("A", "B")
        out = run([], ["X"], cfg)
        assert out.kept == () and out.dropped == ()


def test_each_distinct_sentence_is_encoded_once() -> None:
    inner = LookupEncoder(VECTORS, "lk")
    enc = CachedEncoder(inner)
    outs = calibrate_many([["A", "C"], ["A", "D"], []], [["X"], ["X", "Y"], ["Y"]], enc, PAPER)
    assert inner.calls == [["A", "C", "D", "X", "Y"]]
    assert [o.kept for o in outs] == [("C",), (), ()]
    assert outs[1].record_fields()["dropped_match"] == ["X", "Y"]


def test_calibrate_points_matches_many_and_validates() -> None:
    enc = HashingEncoder(32)
    high, low = ["a dog barks", "rain falls on a roof"], ["a dog barks loudly"]
    one = calibrate_points(high, low, enc.encode(high), enc.encode(low), PAPER, enc.id)
    assert one == calibrate_many([high], [low], enc, PAPER)[0]
    assert one.kept == ("rain falls on a roof",)
    with pytest.raises(ValueError, match="rows"):
        calibrate_points(high, low, np.zeros((1, 32)), enc.encode(low))
    with pytest.raises(ValueError, match="neurons"):
        calibrate_many([high], [], enc)
    with pytest.raises(ValueError, match="not a string"):
        calibrate_many(["a dog"], [low], enc)  # type: ignore[list-item]


# "It is loud." and "It is quiet." as a sentence encoder sees them: nearly the same sentence
# (MiniLM: 0.78 > t); here cos 0.8 (same vector family as P / X above).
ADJ_VECTORS = {**VECTORS, "It is loud.": [0.8, 0.6, 0.0], "It is quiet.": E1,
               "It is loud and brief.": [0.8, 0.6, 0.0], "A brief knock.": E3,
               "A dog barks.": E2, "Dogs bark loudly.": E2}


@pytest.mark.parametrize("cfg", [PAPER, REF], ids=["paper", "reference"])
def test_adjective_lists_are_calibrated_by_word_not_as_sentences(cfg: CalibrationConfig) -> None:
    enc = LookupEncoder(ADJ_VECTORS, "lk")
    # an antonym on the low side never drops an adjective (as sentences: cos 0.8 > t)
    out = calibrate_many([["It is loud."]], [["It is quiet."]], enc, cfg)[0]
    assert out.kept == ("It is loud.",) and out.dropped == ()
    # the same word on the low side drops just that word, in place
    out = calibrate_many([["A dog barks.", "It is loud and brief."]],
                         [["A brief knock.", "It is quiet."]], enc, cfg)[0]
    assert out.kept == ("A dog barks.", "It is loud.")
    assert (out.dropped, out.dropped_match, out.dropped_cos) == (
        ("It is brief.",), ("A brief knock.",), (1.0,))
    # sentences are still compared as sentences, never with an adjective list
    out = calibrate_many([["A dog barks.", "It is loud."]], [["Dogs bark loudly.", "It is loud."]],
                         enc, cfg)[0]
    assert out.kept == () and out.dropped_match == ("Dogs bark loudly.", "It is loud.")


def test_adjective_list_parses_only_the_template() -> None:
    from and_toolkit.dissect.calibrate import adjective_list

    assert adjective_list("It is loud, high-pitched and brief.") == (
        "loud", "high-pitched", "brief")
    assert adjective_list("it is loud.") == ("loud",)
    assert adjective_list("It is a loud dog.") is None
    assert adjective_list("A loud dog.") is None
