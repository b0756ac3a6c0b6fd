"""Shared fixtures for target-network tests: single-threaded torch, tiny configs, random data."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from and_toolkit.targets import ASTArchConfig, CNNArchConfig, TrainConfig

TINY_AST = ASTArchConfig(
    num_layers=1,
    hidden_size=16,
    num_heads=2,
    intermediate_size=32,
    patch_size=4,
    frequency_stride=4,
    time_stride=4,
    num_mel_bins=8,
    max_length=32,
)
TINY_CNN = CNNArchConfig(channels=(4, 8), num_mel_bins=8)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def tiny_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """40 random clips [40, 32 frames, 8 mel], 5 classes, folds 1..5 (8 clips each)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 32, 8)).astype(np.float32)
    targets = np.tile(np.arange(5), 8).astype(np.int64)
    folds = np.repeat(np.arange(1, 6), 8).astype(np.int64)
    return features, targets, folds


def tiny_cfg(arch: str, **kw: object) -> TrainConfig:
    """A one-epoch config for the tiny architectures."""
    base: dict[str, object] = dict(
        arch=arch,
        ast=TINY_AST,
        cnn=TINY_CNN,
        n_classes=5,
        epochs=1,
        batch_size=8,
        time_mask_width=4,
        freq_mask_width=2,
        time_shift=3,
        precision="fp32",
    )
    base.update(kw)
    return TrainConfig.model_validate(base)
