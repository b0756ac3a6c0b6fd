"""pool_output(valid=...): padded frames never enter a mean or a max."""

from __future__ import annotations

import pytest
import torch

from and_toolkit.recording.hooks import Pooling, pool_output, time_dim


def test_time_axis_per_layout() -> None:
    assert time_dim(2, False) is None
    assert (time_dim(3, False), time_dim(3, True), time_dim(4, True)) == (1, 2, 3)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_padding_never_enters_the_pooled_value(mode: str) -> None:
    torch.manual_seed(0)
    valid = torch.tensor([3, 5])
    tokens = torch.randn(2, 5, 4)
    tokens[0, 3:] = 1e6  # padding of clip 0: would dominate a mean or a max
    conv1d = tokens.transpose(1, 2).contiguous()  # [B, C, T]
    conv2d = torch.randn(2, 4, 3, 5)
    conv2d[0, :, :, 3:] = 1e6  # time last
    pool = Pooling(tokens=mode, spatial=mode)  # type: ignore[arg-type]
    red = (lambda x, d: x.mean(dim=d)) if mode == "mean" else (lambda x, d: x.amax(dim=d))
    got = pool_output(tokens, pool, False, valid)
    assert torch.allclose(got[0], red(tokens[0, :3], 0)) and torch.allclose(got[1], red(tokens[1], 0))
    got = pool_output(conv1d, pool, True, valid)
    assert torch.allclose(got[0], red(conv1d[0, :, :3], 1))
    got = pool_output(conv2d, pool, True, valid)
    assert torch.allclose(got[0], red(conv2d[0, :, :, :3], (1, 2)))
    assert torch.allclose(got[1], red(conv2d[1], (1, 2)))


def test_bad_valid_frames_are_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pool_output(torch.zeros(2, 4, 3), Pooling(), False, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="do not fit"):
        pool_output(torch.zeros(2, 4, 3), Pooling(), False, torch.tensor([1, 2, 3]))
