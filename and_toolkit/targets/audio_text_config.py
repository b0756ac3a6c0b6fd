"""The trained audio-text model's config (no torch: the run configuration's ``closed.audio_text``
section is one). The model and its training are in :mod:`~and_toolkit.targets.audio_text`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.targets.cnn_config import CNNArchConfig

__all__ = ["AudioTextConfig"]


class AudioTextConfig(BaseModel):
    """Everything that determines the trained audio-text model besides the data.

    Attributes:
        cnn: the audio tower's CNN trunk (``time_pool`` averages input frames first: 8 turns
            512 frames of 10 ms into 64 of 80 ms). The defaults (16-128 channels, pool 8,
            20 epochs, batch 64, lr 2e-3) were tuned on ESC-50 to train in minutes on a shared
            2-core CPU (benchmarks/results/audio_text.json).
        embed_dim: width d of the joint embedding space.
        text_projection: ``"linear"`` (a trained Linear D -> d on the frozen text embeddings),
            ``"mlp"`` (Linear, GELU, Linear) or ``"none"`` (the frozen space itself: the audio
            tower maps into the text encoder's D dimensions and ``embed_dim`` is unused).
        epochs: passes over the training clips.
        batch_size: clip-caption pairs per step (the in-batch negatives are the others).
        lr: peak learning rate (AdamW; linear warm-up over 10 % of the steps, then cosine).
        weight_decay: AdamW decoupled weight decay on matrices / kernels.
        init_temperature: initial softmax temperature tau (logit scale 1 / tau, learnable,
            clamped to <= 100).
        time_masks: SpecAugment time bands per clip; ``time_mask_width`` their max width
            (frames).
        freq_masks: SpecAugment frequency bands per clip; ``freq_mask_width`` their max width
            (mel bins).
        time_shift: max circular time shift in frames (0 disables).
        test_fold: the fold left out of training (the zero-shot test fold; the paper's 1).
        seed: seed of initialisation, shuffling, augmentation and dropout.
        precision: ``"fp32"`` or ``"bf16"`` (CPU autocast of the audio tower's forward), or
            ``"auto"``: bf16 only where this machine's measurement finds it faster (the
            targets' rule, :func:`~and_toolkit.targets.precision.resolve_precision`); the
            pipeline resolves it before keying and training, so the key holds the precision
            trained.
        threads: torch intra-op threads while training (None: unchanged; default 1, so every
            process trains the same bytes). Not in the key: results are bitwise reproducible
            at a fixed thread count only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cnn: CNNArchConfig = CNNArchConfig(channels=(16, 32, 64, 128), time_pool=8)
    embed_dim: int = Field(default=256, ge=2)
    text_projection: Literal["linear", "mlp", "none"] = "linear"
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=2)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    init_temperature: float = Field(default=0.07, gt=0.01, le=1.0)
    time_masks: int = Field(default=2, ge=0)
    time_mask_width: int = Field(default=48, ge=0)
    freq_masks: int = Field(default=2, ge=0)
    freq_mask_width: int = Field(default=8, ge=0)
    time_shift: int = Field(default=64, ge=0)
    test_fold: int = 1
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    threads: int | None = Field(default=1, ge=1)
