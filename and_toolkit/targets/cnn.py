"""A small log-mel CNN target (about 0.54M parameters) with readable module paths.

Module paths (for recording by path): ``bn0`` (per-mel input normalisation),
``blocks.{i}.conv1``, ``blocks.{i}.bn1``, ``blocks.{i}.conv2``, ``blocks.{i}.bn2``
(i = 0..3), ``dropout``, ``head`` (the Linear classifier; its outputs are the clip logits).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer
from torch import nn

__all__ = ["CNNArchConfig", "ConvBlock", "LogMelCNN", "build_cnn"]


class CNNArchConfig(BaseModel):
    """Architecture of :class:`LogMelCNN`.

    Attributes:
        channels: Output channels of each double-conv block (one block per entry).
        num_mel_bins: Mel bins F of the input features [B, T, F].
        dropout: Dropout probability before the head.
        time_pool: Average-pool the normalised input over this many frames before the first
            block (1 keeps the 10 ms resolution; 2 halves the cost).
        stem_stride: Stride of the first block's first convolution along time and frequency
            (learned downsampling): 2 runs every later layer on a quarter of the positions,
            4.0x fewer multiply-accumulates per 5 s clip with channels 24-48-96-160
            (``benchmarks/results/cnn_cost.json``; the ``cnn`` target's default,
            ``DEFAULT_TARGETS``, has stride 2 and wider late blocks). Left out
            of the config's dump when 1, so keys written before the field stay valid.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: tuple[int, ...] = (24, 48, 96, 160)
    num_mel_bins: int = Field(default=64, gt=0)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    time_pool: int = Field(default=1, ge=1)
    stem_stride: int = Field(default=1, ge=1)

    @field_validator("channels")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(c <= 0 for c in v):
            raise ValueError(f"channels: need at least one positive width, got {v}")
        return v

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.stem_stride == 1:
            out.pop("stem_stride", None)
        return out


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
