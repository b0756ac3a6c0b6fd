"""Factories for the tests: a plain CNN (the supported case) and bad ones (each an error)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from and_toolkit.targets.external import WaveformPreprocess

RATE = 8000


class TinyCNN(nn.Module):
    """Waveform [B, S] at 8 kHz -> framed [B, 1, 32, S/32] -> two conv2d -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x[:, : x.shape[1] // 32 * 32].reshape(x.shape[0], -1, 32).transpose(1, 2)
        h = torch.relu(self.conv2(torch.relu(self.conv1(frames[:, None]))))
        return self.head(h.mean(dim=(2, 3)))


def _waves_to_tensor(waves: Sequence[np.ndarray]) -> torch.Tensor:
    n = 4000  # 0.5 s, cut or zero-padded
    out = np.zeros((len(waves), n), np.float32)
    for i, w in enumerate(waves):
        out[i, : min(n, len(w))] = w[:n]
    return torch.from_numpy(out)


def cnn() -> tuple[nn.Module, WaveformPreprocess]:
    torch.manual_seed(0)
    return TinyCNN(), WaveformPreprocess(_waves_to_tensor, RATE)


def no_rate() -> tuple[nn.Module, object]:
    return TinyCNN(), _waves_to_tensor


def not_a_tuple() -> nn.Module:
    return TinyCNN()


def raises() -> None:
    raise RuntimeError("weights file corrupt")


NOT_CALLABLE = 3
