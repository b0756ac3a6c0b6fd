"""Waveform checks, resampling and whole-clip level / spectrum measures: one definition each.

Used by the backends (CLAP and audio-captioner preprocessing), the probe loader, the acoustic
descriptors of captions (:mod:`and_toolkit.dissect.descriptors`) and Fig 8's clip measures
(:mod:`and_toolkit.experiments.acoustic`). Depends only on numpy and scipy.

Conventions: a waveform is a mono 1-D float array ``[n_samples]`` with full scale 1.0; sample
rates are positive integers in Hz; levels are dB re full scale (dBFS), floored at -120 dB.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

#: Lowest level reported, dB (digital silence).
FLOOR_DB = -120.0
#: Powers below this (linear, full scale 1.0) count as the floor: 10 log10(1e-12) = -120 dB.
POWER_EPS = 1e-12


def _is_rate(value: Any) -> bool:
    """True for a positive integer number of Hz (an int, or an integral float / numpy number)."""
    if isinstance(value, bool):
        return False
    try:
        return bool(int(value) == value and value > 0)
    except (TypeError, ValueError, OverflowError):
        return False


def check_sample_rate(sample_rate: Any, name: str = "sample_rate") -> None:
    """Refuse anything but a positive integer number of Hz.

    Args:
        sample_rate: the rate to check (16000 and 16000.0 pass; 0, -1, 16000.5, True fail).
        name: how the error message calls it.

    Raises:
        ValueError: naming ``name`` and the value.
    """
    if not _is_rate(sample_rate):
        raise ValueError(f"{name} must be a positive integer number of Hz, got {sample_rate!r}")


def check_waveform(waveform: Any, sample_rate: Any, *, name: str = "waveform",
                   dtype: DTypeLike = np.float64) -> np.ndarray:
    """Validate one mono clip and its rate; return it as a ``dtype`` array.

    Args:
        waveform: array-like [n_samples].
        sample_rate: its rate in Hz (see :func:`check_sample_rate`).
        name: how error messages call the clip (e.g. ``"waveforms[3]"``).
        dtype: dtype of the returned array (float64 for measures, float32 for model inputs);
            the finiteness check runs after the conversion.

    Returns:
        The samples as a ``dtype`` array [n_samples] (no copy when already of that dtype).

    Raises:
        ValueError: the rate is not a positive integer; the clip is not 1-D, is empty, or holds
            NaN / inf samples (the message names the clip, its shape or the first bad index).
    """
    check_sample_rate(sample_rate)
    x = np.asarray(waveform, dtype=dtype)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D (mono) array [n_samples], got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}): a clip needs at least one sample")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{name} holds non-finite samples (NaN or inf): {int(bad.sum())} of "
                         f"{x.size}, the first at index {int(np.argmax(bad))}")
    return x


def check_waveforms(waveforms: Sequence[np.ndarray], sample_rate: Any) -> list[np.ndarray]:
    """Validate a batch of mono clips sharing one rate; return them as float32 arrays.

    Args:
        waveforms: N clips, each array-like [n_i] (a list or tuple, not one stacked array).
        sample_rate: their common rate in Hz, a positive integer.

    Returns:
        N float32 arrays [n_i].

    Raises:
        ValueError: ``waveforms`` is a single array, the rate is not a positive integer, or a
            clip is not 1-D, empty or non-finite (see :func:`check_waveform`; the message names
            ``waveforms[i]``).
    """
    check_sample_rate(sample_rate)
    if isinstance(waveforms, np.ndarray):
        raise ValueError("waveforms must be a list of 1-D arrays, not a single array of shape "
                         f"{waveforms.shape}")
    return [check_waveform(w, sample_rate, name=f"waveforms[{i}]", dtype=np.float32)
            for i, w in enumerate(waveforms)]


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``: Kaiser window, beta 5), in float64.

    The rates are reduced by their gcd (16 kHz -> 48 kHz is up 3, down 1).

    Args:
        waveform: 1-D float array [n] at ``orig_sr`` Hz.
        orig_sr: input rate in Hz (positive integer).
        target_sr: output rate in Hz (positive integer).

    Returns:
        float32 [ceil(n * target_sr / orig_sr)] at ``target_sr`` Hz; a float32 copy when the
        rates are equal.

    Raises:
        ValueError: a rate is not a positive integer, or the waveform is not 1-D.
    """
    if not (_is_rate(orig_sr) and _is_rate(target_sr)):
        raise ValueError(f"sample rates must be positive integers (Hz), got orig_sr={orig_sr!r}, "
                         f"target_sr={target_sr!r}")
    x = np.asarray(waveform, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"waveform must be a 1-D (mono) array [n_samples], got shape {x.shape}")
    if orig_sr == target_sr:
        return x.astype(np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(orig_sr), int(target_sr))
    return resample_poly(x, int(target_sr) // g, int(orig_sr) // g).astype(np.float32)


def power_db(power: np.ndarray) -> np.ndarray:
    """Power (mean square, full scale 1.0) in dB: ``max(10 log10(max(p, 1e-12)), -120)``.

    Args:
        power: float array (any shape) of linear powers >= 0.

    Returns:
        float64 array of the same shape, dB in [-120, ...).
    """
    return np.maximum(10.0 * np.log10(np.maximum(power, POWER_EPS)), FLOOR_DB)


def rms(waveform: np.ndarray) -> float:
    """Root mean square of the samples (linear amplitude, full scale 1.0), in float64.

    Args:
        waveform: float array [n_samples] (non-empty).

    Returns:
        ``sqrt(mean(x**2))``.
    """
    x = np.asarray(waveform, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x)))


def rms_dbfs(waveform: np.ndarray) -> float:
    """Whole-clip RMS level in dBFS: ``10 log10(mean(x**2))`` (= 20 log10 RMS), floor -120.

    Computed from the mean square (no square root), via :func:`power_db`; digital silence and
    levels below -120 dBFS give -120.

    Args:
        waveform: float array [n_samples] (non-empty), full scale 1.0.

    Returns:
        The level in dB, >= -120.
    """
    x = np.asarray(waveform, dtype=np.float64)
    return float(power_db(np.array([np.mean(x**2)]))[0])


def median_frequency(waveform: np.ndarray, sample_rate: int, *, remove_dc: bool = False) -> float:
    """Median frequency (MDF) of the whole-clip power spectrum (reference-spec §9).

    P = |rFFT(x)|² over the whole clip (no window, DC bin included); the MDF is the smallest
    bin frequency f with Σ_{f_i <= f} P(f_i) >= ½ Σ P(f_i).

    Args:
        waveform: float array [n_samples] (non-empty), at ``sample_rate`` Hz.
        sample_rate: Hz (> 0).
        remove_dc: subtract the mean before the spectrum (a DC offset would otherwise pull the
            MDF towards 0 Hz).

    Returns:
        The MDF in Hz, in [0, sample_rate / 2]; 0.0 for a silent clip (zero total power).
    """
    x = np.asarray(waveform, dtype=np.float64)
    y = x - x.mean() if remove_dc else x
    power = np.abs(np.fft.rfft(y)) ** 2
    total = float(power.sum())
    if total <= 0:
        return 0.0
    freqs = np.fft.rfftfreq(x.size, 1.0 / sample_rate)
    k = int(np.searchsorted(np.cumsum(power), 0.5 * total, side="left"))
    return float(freqs[min(k, freqs.size - 1)])
