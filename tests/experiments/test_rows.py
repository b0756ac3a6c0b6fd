"""The one ResultRow builder and key builder, and the rule that keys are never parsed."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest

from and_toolkit.experiments.masks import evaluate_masks, mask_sha
from and_toolkit.experiments.rows import (
    Padded,
    neuron_part,
    result_key,
    result_row,
    tagged,
)
from and_toolkit.records import ResultRow

PACKAGE = Path(__file__).resolve().parents[2] / "and_toolkit"


def test_result_key_joins_typed_parts() -> None:
    assert result_key("ast", "DB", "cos_cubed", "top1") == "ast/DB/cos_cubed/top1"
    assert result_key("m", 3, 2.0, 2.5, 12.0) == "m/3/2/2.5/12"
    assert result_key(tagged("block", 3), tagged("seed", 20)) == "block=3/seed=20"
    assert result_key("m", neuron_part("blocks.0.fc1", 7)) == "m/blocks.0.fc1#7"
    assert result_key("only") == "only"


@pytest.mark.parametrize("bad", ["a/b", "/", "x/"])
def test_result_key_refuses_a_slash_in_a_part(bad: str) -> None:
    with pytest.raises(ValueError, match="contains '/'"):
        result_key("model", bad, "metric")
    with pytest.raises(ValueError, match="contains '/'"):
        result_key("model", tagged("word", bad))


@pytest.mark.parametrize("bad", [True, math.nan, math.inf, None, b"x", ("a",)])
def test_result_key_refuses_other_parts(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        result_key("m", bad)  # type: ignore[arg-type]


def test_result_key_refuses_empty_keys_and_parts() -> None:
    with pytest.raises(ValueError, match="at least one"):
        result_key()
    with pytest.raises(ValueError, match="empty"):
        result_key("m", "")
    with pytest.raises(ValueError, match="empty name"):
        tagged("", 1)


def test_padding_makes_keys_sort_in_numeric_order() -> None:
    assert str(Padded(3, 3)) == "003" and str(Padded(1234, 3)) == "1234"
    assert str(Padded(4.0, 6)) == "0004.0" and str(Padded(12.5, 6)) == "0012.5"
    assert tagged("cluster", Padded(7, 3)) == "cluster=007"
    blocks = [1, 2, 10, 9, 100]
    plain = sorted(result_key("m", b) for b in blocks)
    padded = sorted(result_key("m", Padded(b, 3)) for b in blocks)
    assert plain == ["m/1", "m/10", "m/100", "m/2", "m/9"]  # string order without padding
    assert padded == ["m/001", "m/002", "m/009", "m/010", "m/100"]
    budgets = sorted(result_key("m", Padded(x, 6)) for x in (12.0, 2.0, 10.0, 4.0))
    assert budgets == ["m/0002.0", "m/0004.0", "m/0010.0", "m/0012.0"]
    with pytest.raises(ValueError):
        Padded(3, 0)
    with pytest.raises(ValueError):
        Padded(math.nan, 3)
    with pytest.raises(TypeError):
        Padded(True, 3)


def test_result_row_has_the_record_fields_and_nulls_non_finite_numbers() -> None:
    row = result_row("fig5", result_key("m", "fit", "n"), "slope", math.nan, model="m",
                     x=2, paper_value=math.inf, note="why")
    assert row == {"experiment": "fig5", "key": "m/fit/n", "model": "m", "group": "",
                   "series": "", "x": 2.0, "metric": "slope", "value": None,
                   "paper_value": None, "note": "why"}
    ResultRow.validate_frame(ResultRow.frame([row]))


def test_mask_sha_ignores_layers_with_nothing_pruned_and_dedups_evaluation() -> None:
    a = {"l1": np.array([True, False]), "l2": np.zeros(3, bool)}
    assert mask_sha(a) == mask_sha({"l1": np.array([True, False])})
    assert mask_sha(a) != mask_sha({"l1": np.array([False, True])})
    assert mask_sha({"l2": np.zeros(3, bool)}) == mask_sha({})
    # the bytes hashed: "<layer>\0<n_units>\0" + packbits, for pruned layers in sorted order
    h = hashlib.sha256(b"l1\x002\x00" + np.packbits([True, False]).tobytes())
    assert mask_sha(a) == h.hexdigest()
    calls = []

    def evaluate(mask: object) -> np.ndarray:
        calls.append(mask)
        return np.full((2, 3), float(len(calls)))

    out = evaluate_masks([a, {"l1": np.array([True, False])}, {"l2": np.zeros(3, bool)}],
                         evaluate, n_rows=2)
    assert len(calls) == 2 and out[0] is out[1] and out[2][0, 0] == 2.0


def test_no_module_parses_result_keys() -> None:
    """Keys are built by rows.result_key and never split, matched or rewritten."""
    pattern = re.compile(r"""col\(["']key["']\)\s*\.\s*str\b|\["key"\]\s*\.\s*str\b""")
    offenders = [f"{p.relative_to(PACKAGE)}:{i}"
                 for folder in ("experiments", "report")
                 for p in sorted((PACKAGE / folder).rglob("*.py"))
                 for i, line in enumerate(p.read_text("utf-8").splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []
