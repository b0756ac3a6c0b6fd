"""Reading probe audio: one explicit loader, clear errors, no silent resampling or downmixing.

Every failure raises :class:`~and_toolkit.errors.DataError` naming the file. A wrong sample rate
or a multi-channel file is an error unless the caller asks for the conversion explicitly
(``resample=True`` / ``downmix=True``), in which case the caller records that it did so
(:func:`rate_plan` is that record for rates; the pipeline writes it to the probe's provenance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from and_toolkit.errors import DataError
from and_toolkit.signal import resample as resample_waveform

__all__ = ["RESAMPLER", "audio_info", "load_audio", "load_clips", "rate_plan"]

RESAMPLER = "scipy.signal.resample_poly (Kaiser window, beta 5; rates reduced by their gcd)"
"""How :func:`load_audio` resamples (``and_toolkit.signal.resample``); recorded in provenance."""


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """Header information of an audio file, without decoding it.

    Args:
        path: audio file (any format libsndfile reads: wav, flac, ogg, ...).

    Returns:
        ``(sample_rate in Hz, n_samples per channel, n_channels)``.

    Raises:
        DataError: the file is missing or is not a readable audio file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file does not exist")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError / TypeError
        raise DataError(f"{path}: not a readable audio file ({exc})") from exc
    if info.frames <= 0:
        raise DataError(f"{path}: audio file has no samples")
    return int(info.samplerate), int(info.frames), int(info.channels)


def load_audio(
    path: str | Path,
    expected_sr: int,
    resample: bool = False,
    *,
    downmix: bool = False,
) -> np.ndarray:
    """Load one audio file as a float32 mono waveform at ``expected_sr``.

    Args:
        path: audio file.
        expected_sr: required sample rate in Hz.
        resample: if the file's rate differs, resample it with a polyphase filter
            (:func:`and_toolkit.signal.resample`: ``scipy.signal.resample_poly`` in float64,
            rates reduced by their gcd) instead of failing.
        downmix: if the file has several channels, average them instead of failing.

    Returns:
        float32 array [n_samples] with values as stored (PCM files are scaled to [-1, 1]).

    Raises:
        DataError: missing or unreadable file, empty file, non-finite samples, a sample rate other
            than ``expected_sr`` (without ``resample``), or several channels (without ``downmix``).
        ValueError: ``expected_sr`` is not positive.
    """
    if expected_sr <= 0:
        raise ValueError(f"expected_sr: must be a positive rate in Hz, got {expected_sr}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file does not exist")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable audio file ({exc})") from exc
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file has no samples")
    if data.shape[1] > 1:
        if not downmix:
            raise DataError(
                f"{path}: has {data.shape[1]} channels, expected mono "
                "(pass downmix=True, or set probe.downmix = true, to average the channels)"
            )
        wave = data.mean(axis=1, dtype=np.float32)
    else:
        wave = data[:, 0]
    if not np.isfinite(wave).all():
        raise DataError(f"{path}: contains NaN or infinite samples")
    if sr != expected_sr:
        if not resample:
            raise DataError(
                f"{path}: sample rate is {sr} Hz, expected {expected_sr} Hz "
                "(pass resample=True, or set probe.resample = true, to resample explicitly)"
            )
        wave = resample_waveform(wave, int(sr), expected_sr)
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_clips(
    root: str | Path,
    paths: Sequence[str],
    expected_sr: int,
    resample: bool = False,
    *,
    downmix: bool = False,
) -> list[np.ndarray]:
    """Load the audio of a probing set in probe order.

    Args:
        root: dataset root; ``paths`` are relative to it (the ``ProbeClip.path`` column).
        paths: relative audio paths, in probe order.
        expected_sr: required sample rate in Hz.
        resample: see :func:`load_audio`.
        downmix: see :func:`load_audio`.

    Returns:
        One float32 mono waveform per path, in order.

    Raises:
        DataError: see :func:`load_audio` (the first bad file stops loading).
    """
    root = Path(root)
    return [load_audio(root / p, expected_sr, resample, downmix=downmix) for p in paths]


def rate_plan(sample_rates: Sequence[int], paths: Sequence[str], front_end_sr: int,
              resample: bool) -> dict[str, Any]:
    """Check a probing set's file rates against the front end's, before anything is loaded.

    Args:
        sample_rates: each clip's file rate in Hz (``ProbeClip.sample_rate``), probe order.
        paths: each clip's path (for the error message), same order.
        front_end_sr: the rate the log-mel front end expects (``FeatureConfig.sample_rate``).
        resample: whether clips at another rate may be resampled (``probe.resample``).

    Returns:
        Provenance: ``front_end_rate`` (Hz), ``file_rates`` (``{"<Hz>": n_clips}``),
        ``resampled_clips`` (how many will be resampled) and ``resampler`` (:data:`RESAMPLER`,
        or None when no clip needs it).

    Raises:
        DataError: some clip's rate differs and ``resample`` is False (names the first file,
            both rates, the number of such clips and the config field).
    """
    if len(sample_rates) != len(paths):
        raise ValueError(f"{len(sample_rates)} sample rates for {len(paths)} paths")
    off = [(p, int(r)) for p, r in zip(paths, sample_rates, strict=True) if int(r) != front_end_sr]
    if off and not resample:
        path, sr = off[0]
        raise DataError(
            f"{path}: sample rate is {sr} Hz, the front end expects {front_end_sr} Hz "
            f"({len(off)} of {len(paths)} clips differ); set probe.resample = true to resample "
            "them explicitly")
    rates = Counter(int(r) for r in sample_rates)
    return {"front_end_rate": int(front_end_sr),
            "file_rates": {str(r): n for r, n in sorted(rates.items())},
            "resampled_clips": len(off), "resampler": RESAMPLER if off else None}
