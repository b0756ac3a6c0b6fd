"""A small log-mel CNN target (about 0.54M parameters) with readable module paths.

Module paths (for recording by path): ``bn0`` (per-mel input normalisation),
``blocks.{i}.conv1``, ``blocks.{i}.bn1``, ``blocks.{i}.conv2``, ``blocks.{i}.bn2``
(i = 0..3), ``dropout``, ``head`` (the Linear classifier; its outputs are the clip logits).
"""

from __future__ import annotations

import torch
from torch import nn

from and_toolkit.targets.cnn_config import CNNArchConfig

__all__ = ["CNNArchConfig", "ConvBlock", "LogMelCNN", "build_cnn"]


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers followed by 2x2 average pooling.

    Args:
        c_in: Input channels.
        c_out: Output channels.
        stride: Stride of the first convolution (both axes).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map [B, c_in, H, W] to [B, c_out, ceil(H / s) // 2, ceil(W / s) // 2] (s = stride)."""
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.pool(x)


class LogMelCNN(nn.Module):
    """CNN classifier on log-mel features.

    Input [B, T, F] -> per-mel BatchNorm -> optional time pooling -> conv blocks on [B, C, T, F] -> mean over frequency
    -> max + mean over time -> dropout -> Linear head -> logits [B, n_classes].

    Args:
        cfg: Architecture settings.
        n_classes: Number of output classes.
    """

    def __init__(self, cfg: CNNArchConfig, n_classes: int) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(cfg.num_mel_bins)
        self.time_pool = cfg.time_pool
        widths = (1, *cfg.channels)
        self.blocks = nn.ModuleList(
            ConvBlock(widths[i], widths[i + 1], cfg.stem_stride if i == 0 else 1)
            for i in range(len(cfg.channels))
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.channels[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features [B, T, F] to logits [B, n_classes]."""
        if x.ndim != 3:
            raise ValueError(f"x: expected features [B, T, F], got shape {tuple(x.shape)}")
        x = self.bn0(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        x = x.unsqueeze(1)
        if self.time_pool > 1:
            x = nn.functional.avg_pool2d(x, (self.time_pool, 1), ceil_mode=True)
        for block in self.blocks:
            x = block(x)
        x = x.mean(dim=3)
        x = x.amax(dim=2) + x.mean(dim=2)
        return self.head(self.dropout(x))


def build_cnn(cfg: CNNArchConfig, n_classes: int) -> LogMelCNN:
    """Build a randomly initialised :class:`LogMelCNN` (uses the current torch RNG).

    Args:
        cfg: Architecture settings.
        n_classes: Number of classes (> 1).

    Returns:
        The model in train mode.

    Raises:
        ValueError: If ``n_classes < 2``.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes: need at least 2, got {n_classes}")
    return LogMelCNN(cfg, n_classes)
