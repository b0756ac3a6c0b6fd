"""Seeded batch augmentations on log-mel features [B, T, F]: SpecAugment masks, time shift, mixup.

Every function takes an explicit ``torch.Generator`` and returns new tensors (inputs are never
modified), so a training run is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mixup", "spec_augment", "time_shift"]


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 3:
        raise ValueError(f"x: expected features [B, T, F], got shape {tuple(x.shape)}")


def _band_mask(
    batch: int, length: int, n_masks: int, max_width: int, generator: torch.Generator
) -> torch.Tensor:
    """Boolean [B, length] mask, True inside ``n_masks`` random bands of width 0..max_width."""
    pos = torch.arange(length)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    width_cap = min(max_width, length)
    for _ in range(n_masks):
        width = torch.randint(0, width_cap + 1, (batch, 1), generator=generator)
        start = (torch.rand(batch, 1, generator=generator) * (length - width + 1)).long()
        mask |= (pos >= start) & (pos < start + width)
    return mask


def spec_augment(
    x: torch.Tensor,
    generator: torch.Generator,
    time_masks: int = 2,
    time_width: int = 48,
    freq_masks: int = 2,
    freq_width: int = 8,
    fill: float = 0.0,
) -> torch.Tensor:
    """SpecAugment-style masking: zero random time and frequency bands of each clip.

    Args:
        x: Features [B, T, F].
        generator: Source of randomness (CPU generator).
        time_masks: Number of time bands per clip.
        time_width: Maximum width of a time band in frames (each width is uniform in 0..max).
        freq_masks: Number of frequency bands per clip.
        freq_width: Maximum width of a frequency band in mel bins.
        fill: Value written into masked cells.

    Returns:
        New tensor [B, T, F] with masked cells set to ``fill``.

    Raises:
        ValueError: If ``x`` is not 3-D or a count/width is negative.
    """
    _check_batch(x)
    for name, val in [
        ("time_masks", time_masks),
        ("time_width", time_width),
        ("freq_masks", freq_masks),
        ("freq_width", freq_width),
    ]:
        if val < 0:
            raise ValueError(f"{name}: must be >= 0, got {val}")
    b, t, f = x.shape
    tmask = _band_mask(b, t, time_masks, time_width, generator)
    fmask = _band_mask(b, f, freq_masks, freq_width, generator)
    full = tmask[:, :, None] | fmask[:, None, :]
    return x.masked_fill(full.to(x.device), fill)


def time_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Circularly shift each clip in time by a random number of frames in [-max_shift, max_shift].

    Args:
        x: Features [B, T, F].
        generator: Source of randomness.
        max_shift: Largest shift in frames (0 returns a copy).

    Returns:
        New tensor [B, T, F].

    Raises:
        ValueError: If ``x`` is not 3-D or ``max_shift`` is negative.
    """
    _check_batch(x)
    if max_shift < 0:
        raise ValueError(f"max_shift: must be >= 0, got {max_shift}")
    b, t, f = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (b, 1), generator=generator)
    idx = (torch.arange(t)[None, :] - shift) % t
    return torch.gather(x, 1, idx[:, :, None].expand(b, t, f).to(x.device))


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each clip with a random partner from the batch: ``lam * a + (1 - lam) * b``.

    ``lam ~ Beta(alpha, alpha)`` is drawn per clip (from a numpy generator seeded by
    ``generator``) and folded to ``max(lam, 1 - lam)`` so the first clip dominates.

    Args:
        x: Features [B, T, F] (any shape with batch first works).
        y: Soft or one-hot targets [B, C] (float).
        alpha: Beta concentration; ``alpha <= 0`` returns copies of the inputs.
        generator: Source of randomness.

    Returns:
        (mixed x, mixed y) with the input shapes.

    Raises:
        ValueError: If batch sizes differ or ``y`` is not 2-D.
    """
    if y.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y: expected [B, C] with B={x.shape[0]}, got shape {tuple(y.shape)}")
    if alpha <= 0:
        return x.clone(), y.clone()
    b = x.shape[0]
    perm = torch.randperm(b, generator=generator)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    lam_np = np.random.default_rng(seed).beta(alpha, alpha, size=b)
    lam = torch.from_numpy(np.maximum(lam_np, 1.0 - lam_np)).to(x.dtype)
    lx = lam.view(b, *([1] * (x.ndim - 1)))
    ly = lam.view(b, 1).to(y.dtype)
    return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]
