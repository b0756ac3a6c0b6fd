"""Pruning by forward hook == zeroing weight rows (bitwise-equal logits); clean hook removal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from and_toolkit.recording.prune import (
    mask_counts,
    prunable_layers,
    pruned,
    validate_mask,
    zero_weight_rows,
)


def _bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Linear(16, 8), nn.GELU(),
                         nn.Linear(8, 3)).eval()


def test_mlp_hook_equals_weight_zeroing() -> None:
    model = _mlp()
    x = torch.randn(10, 6)
    mask = {"0": np.arange(16) % 3 == 0, "2": [1, 0, 0, 1, 0, 0, 0, 1]}
    with torch.no_grad():
        base = model(x)
        with pruned(model, mask) as m:
            hooked = m(x)
        zeroed = zero_weight_rows(model, mask)(x)
        after = model(x)
    assert _bitwise_equal(hooked, zeroed)
    assert not torch.equal(hooked, base)
    assert _bitwise_equal(after, base)  # hooks removed, model untouched
    first = model[0]
    assert isinstance(first, nn.Linear)
    assert int(torch.count_nonzero(first.weight)) == first.weight.numel()


def test_masked_units_are_exactly_positive_zero() -> None:
    model = _mlp()
    x = torch.randn(2, 6)
    with torch.no_grad():
        full = model[0](x)
        with pruned(model, {"0": np.arange(16) < 4}):
            out0 = model[0](x)
    assert torch.count_nonzero(full[:, :4]) == 8
    assert torch.all(out0[:, :4] == 0) and not torch.signbit(out0[:, :4]).any()
    assert torch.equal(out0[:, 4:], full[:, 4:])


def test_tiny_ast_hook_equals_weight_zeroing(tiny_ast: nn.Module) -> None:
    layers = prunable_layers(tiny_ast)
    rng = np.random.default_rng(3)
    mask = {name: rng.random(width) < 0.3 for name, width in layers.items()
            if ".layers." in name and name.endswith(("o_proj", "fc1", "fc2"))}
    assert len(mask) == 6
    x = torch.randn(4, 48, 16)
    with torch.no_grad():
        base = tiny_ast(x).logits
        with pruned(tiny_ast, mask):
            hooked = tiny_ast(x).logits
        zeroed = zero_weight_rows(tiny_ast, mask)(x).logits
    assert _bitwise_equal(hooked, zeroed)
    assert not torch.equal(hooked, base)


def test_conv_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    x = torch.randn(2, 1, 6, 6)
    mask = {"0": [0, 1, 0, 1]}
    with torch.no_grad():
        with pruned(model, mask):
            hooked = model(x)
            mid = model[0](x)
        zeroed = zero_weight_rows(model, mask)(x)
    assert torch.all(mid[:, [1, 3]] == 0) and torch.count_nonzero(mid[:, [0, 2]]) > 0
    assert _bitwise_equal(hooked, zeroed)


def test_hooks_removed_on_exception() -> None:
    model = _mlp()
    with pytest.raises(RuntimeError, match="boom"), pruned(model, {"0": np.ones(16, bool)}):
        assert model[0]._forward_hooks
        raise RuntimeError("boom")
    assert not model[0]._forward_hooks


def test_validation() -> None:
    model = _mlp()
    with pytest.raises(ValueError, match=r"unknown layer '7'.*prunable layers: 0, 2, 4"):
        validate_mask(model, {"7": [1]})
    with pytest.raises(ValueError, match=r"mask\['2'\].*8 units.*\(5,\)"):
        with pruned(model, {"2": np.zeros(5, bool)}):
            pass
    assert not model[2]._forward_hooks
    with pytest.raises(ValueError, match="bool or 0/1"):
        zero_weight_rows(model, {"4": [0, 2, 0]})
    assert mask_counts({"0": np.arange(16) < 5, "2": torch.ones(8)}) == {"0": 5, "2": 8}
    assert prunable_layers(model) == {"0": 16, "2": 8, "4": 3}
