"""The CNN target's architecture config (no torch: the run configuration imports it through
:class:`~and_toolkit.targets.audio_text_config.AudioTextConfig`). The network is
:class:`~and_toolkit.targets.cnn.LogMelCNN`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

__all__ = ["CNNArchConfig"]


class CNNArchConfig(BaseModel):
    """Architecture of :class:`~and_toolkit.targets.cnn.LogMelCNN`.

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
