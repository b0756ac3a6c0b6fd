"""SpecAugment masks, time shift and mixup: shapes, seeding, semantics."""

from __future__ import annotations

import pytest
import torch

from and_toolkit.targets import mixup, spec_augment, time_shift


def _x() -> torch.Tensor:
    return torch.randn(6, 40, 12, generator=torch.Generator().manual_seed(0)) + 5.0


def test_spec_augment_masks_bands_and_is_seeded() -> None:
    x = _x()
    a = spec_augment(x, torch.Generator().manual_seed(1), 2, 10, 2, 3)
    b = spec_augment(x, torch.Generator().manual_seed(1), 2, 10, 2, 3)
    c = spec_augment(x, torch.Generator().manual_seed(2), 2, 10, 2, 3)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, _x())  # input untouched
    zero = a == 0
    # Cells are either untouched or zeroed; zeroed cells form full rows/columns per clip.
    assert torch.equal(a[~zero], x[~zero])
    for i in range(x.shape[0]):
        rows = zero[i].all(dim=1)
        cols = zero[i].all(dim=0)
        assert torch.equal(zero[i], rows[:, None] | cols[None, :])
        assert rows.sum() <= 20 and cols.sum() <= 6


def test_spec_augment_zero_masks_is_identity() -> None:
    x = _x()
    assert torch.equal(spec_augment(x, torch.Generator(), 0, 10, 0, 3), x)
    with pytest.raises(ValueError, match="time_masks"):
        spec_augment(x, torch.Generator(), -1, 10, 0, 3)
    with pytest.raises(ValueError, match="x"):
        spec_augment(x[0], torch.Generator())


def test_time_shift_is_a_circular_roll() -> None:
    x = _x()
    g = torch.Generator().manual_seed(0)
    y = time_shift(x, g, 7)
    assert y.shape == x.shape
    for i in range(x.shape[0]):
        assert any(torch.equal(y[i], torch.roll(x[i], s, dims=0)) for s in range(-7, 8))
    assert torch.equal(time_shift(x, torch.Generator(), 0), x)


def test_mixup_convex_and_seeded() -> None:
    x = _x()
    y = torch.eye(4)[torch.tensor([0, 1, 2, 3, 0, 1])]
    xa, ya = mixup(x, y, 0.4, torch.Generator().manual_seed(5))
    xb, yb = mixup(x, y, 0.4, torch.Generator().manual_seed(5))
    assert xa.shape == x.shape and ya.shape == y.shape
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    torch.testing.assert_close(ya.sum(dim=1), torch.ones(6))
    assert (ya.max(dim=1).values >= 0.5 - 1e-6).all()
    assert not torch.equal(xa, x)
    x0, y0 = mixup(x, y, 0.0, torch.Generator())
    assert torch.equal(x0, x) and torch.equal(y0, y)
    with pytest.raises(ValueError, match="y"):
        mixup(x, y[:3], 0.4, torch.Generator())
