"""Masked-patch pretraining settings (no torch: part of
:class:`~and_toolkit.targets.train_config.TrainConfig`). The pretraining is in
:mod:`~and_toolkit.targets.pretrain`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PretrainConfig"]


class PretrainConfig(BaseModel):
    """Masked-patch pretraining settings.

    Attributes:
        epochs: Passes over the pretraining clips.
        batch_size: Clips per step.
        lr: Peak AdamW learning rate (linear warm-up over ``warmup_frac``, then cosine).
        weight_decay: AdamW weight decay on matrices.
        warmup_frac: Fraction of steps spent warming up.
        mask_ratio: Fraction of patches masked in each clip.
        time_shift: Max circular time shift (frames) applied before masking.
        include_test_fold: Pretrain on all clips (True, transductive like the brief's protocol)
            or only on the training folds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=32, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_frac: float = Field(default=0.1, ge=0, lt=1)
    mask_ratio: float = Field(default=0.5, gt=0, lt=1)
    time_shift: int = Field(default=64, ge=0)
    include_test_fold: bool = True
