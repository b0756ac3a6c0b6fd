"""Log-mel features shared by every target network (AST and CNN).

The features are the ones of transformers' ``ASTFeatureExtractor`` (Kaldi-style fbank computed
in numpy, so torchaudio is not needed), with 64 mel bins and 512 frames (10 ms hop) by default.
This module is pure: it never reads files or caches; callers cache by a key of their own
(e.g. :func:`features_sha`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FeatureConfig", "features_sha", "logmel_features"]

_IMPORT_LOCK = threading.Lock()
"""Serialises the import of transformers' extractor: transformers' lazy module raises
ImportError in all but one of several threads that import its names for the first time at
once (transformers 5; the explorer draws spectrograms in a thread pool)."""


def _ast_feature_extractor() -> Any:
    with _IMPORT_LOCK:
        from transformers import ASTFeatureExtractor
    return ASTFeatureExtractor


class FeatureConfig(BaseModel):
    """Log-mel feature settings.

    Attributes:
        sample_rate: Expected waveform sample rate in Hz (waveforms are never resampled here).
        num_mel_bins: Number of mel bins F.
        max_length: Number of frames T (10 ms hop); clips are zero-padded or truncated to it.
        mean: Normalisation mean (log-mel units); the extractor computes ``(x - mean) / (2 std)``.
        std: Normalisation standard deviation (log-mel units).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sample_rate: int = Field(default=16000, gt=0)
    num_mel_bins: int = Field(default=64, gt=0)
    max_length: int = Field(default=512, gt=0)
    mean: float = -4.2677393
    std: float = Field(default=4.5689974, gt=0)


def logmel_features(waveforms: Sequence[np.ndarray], cfg: FeatureConfig) -> np.ndarray:
    """Compute normalised log-mel filterbank features with ``ASTFeatureExtractor``.

    Args:
        waveforms: N mono waveforms, each a 1-D float array at ``cfg.sample_rate`` Hz with
            values in [-1, 1]. Lengths may differ.
        cfg: Feature settings.

    Returns:
        float32 array [N, cfg.max_length, cfg.num_mel_bins] (frames, mel bins).

    Raises:
        ValueError: If ``waveforms`` is empty, or a waveform is not 1-D, is shorter than one
            25 ms analysis window, or has non-finite samples.
    """
    if len(waveforms) == 0:
        raise ValueError("waveforms: expected at least one waveform, got none")
    window = int(round(0.025 * cfg.sample_rate))
    checked: list[np.ndarray] = []
    for i, wav in enumerate(waveforms):
        arr = np.asarray(wav, dtype=np.float32)
        if arr.ndim != 1:
            raise ValueError(f"waveforms[{i}]: expected a 1-D mono waveform, got shape {arr.shape}")
        if arr.shape[0] < window:
            raise ValueError(
                f"waveforms[{i}]: {arr.shape[0]} samples is shorter than one {window}-sample window"
            )
        if not np.isfinite(arr).all():
            raise ValueError(f"waveforms[{i}]: contains NaN or infinite samples")
        checked.append(arr)
    extractor = _ast_feature_extractor()(
        sampling_rate=cfg.sample_rate,
        num_mel_bins=cfg.num_mel_bins,
        max_length=cfg.max_length,
        mean=cfg.mean,
        std=cfg.std,
        do_normalize=True,
    )
    out = extractor(checked, sampling_rate=cfg.sample_rate, return_tensors="np")["input_values"]
    return np.ascontiguousarray(out, dtype=np.float32)


def features_sha(features: np.ndarray) -> str:
    """SHA-256 of a feature array's shape, dtype and bytes.

    Args:
        features: Any numpy array (typically [N, T, F] float32).

    Returns:
        64-character hex digest.
    """
    arr = np.ascontiguousarray(features)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}|{arr.shape}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()
