"""A small built-in synthetic probing set, generated deterministically by our own code.

Twelve classes of clearly different sounds (pure tones, rising / falling sweeps, white / pink
noise bursts, click trains, beeps, amplitude-modulated tones, buzzy harmonic tones, near-silence
with blips, sirens, low rumbles), ``n_per_class`` clips each, 1-2 s at 16 kHz, folds 1..4
(fold 1 = test). Loudness, pitch and timing vary within a class. Every clip also gets a caption
written from its generating parameters (e.g. "A loud high-pitched pure tone at 3000 Hz that stays
steady."), so the whole pipeline can run without any downloaded data or captioner.

Each clip draws from its own RNG seeded by (seed, class, clip number), so clips do not depend on
one another and the output is identical on every run and platform (numpy's PCG64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from and_toolkit.records import ProbeClip

__all__ = ["SYNTHETIC_CLASSES", "SyntheticConfig", "SyntheticProbe", "synthetic_probe"]


class SyntheticConfig(BaseModel):
    """Size and seed of the synthetic probing set.

    Attributes:
        n_per_class: clips per class.
        sample_rate: sample rate in Hz.
        seed: base seed; clip (class c, number j) uses the seed sequence [seed, c, j].
        min_seconds: shortest clip, s.
        max_seconds: longest clip, s.
        n_folds: folds 1..n_folds are assigned round-robin within each class (fold 1 = test).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_per_class: int = Field(default=8, gt=0)
    sample_rate: int = Field(default=16000, ge=8000)
    seed: int = Field(default=0, ge=0)
    min_seconds: float = Field(default=1.0, gt=0.1)
    max_seconds: float = Field(default=2.0, gt=0.1)
    n_folds: int = Field(default=4, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.max_seconds < self.min_seconds:
            raise ValueError(
                f"max_seconds: {self.max_seconds} is below min_seconds {self.min_seconds}"
            )
        return self


class SyntheticProbe(NamedTuple):
    """The synthetic probing set.

    Attributes:
        probe: ``ProbeClip`` frame (dataset 'synthetic', path '').
        waveforms: clip_id -> float32 [n_samples] mono waveform in [-1, 1].
        captions: clip_id -> caption text written from the generating parameters.
    """

    probe: pl.DataFrame
    waveforms: dict[str, np.ndarray]
    captions: dict[str, str]


# ----- helpers ------------------------------------------------------------------------------

def _loudness(rng: np.random.Generator, lo: float = -30.0, hi: float = -3.0) -> tuple[float, str]:
    """Draw a peak level in dBFS and its adjective."""
    db = round(float(rng.uniform(lo, hi)), 1)
    word = "quiet" if db < -20 else "moderately loud" if db < -10 else "loud"
    return db, word


_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six")


def _pitch_word(freq: float) -> str:
    return "low-pitched" if freq < 400 else "medium-pitched" if freq < 1500 else "high-pitched"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, step: float = 10.0) -> float:
    """A frequency drawn log-uniformly in [lo, hi] Hz, rounded to ``step`` Hz."""
    return float(round(np.exp(rng.uniform(np.log(lo), np.log(hi))) / step) * step)


def _finish(x: np.ndarray, db: float, sr: int, fade: bool = True) -> np.ndarray:
    """Apply 10 ms raised-cosine fades and scale the peak to ``db`` dBFS."""
    x = np.asarray(x, dtype=np.float64)
    if fade:
        n = min(int(0.01 * sr), x.size // 2)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    peak = float(np.max(np.abs(x)))
    if peak > 0:
        x = x * (10.0 ** (db / 20.0) / peak)
    return x.astype(np.float32)


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, shape: str) -> np.ndarray:
    """White noise shaped in the frequency domain: 'white', 'pink' (1/f power), 'rumble'."""
    white = rng.standard_normal(n)
    if shape == "white":
        return white
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    if shape == "pink":
        gain = 1.0 / np.sqrt(np.maximum(freqs, 20.0))
    else:  # rumble: brown-ish noise below ~150 Hz
        gain = np.where(freqs < 150.0, 1.0 / np.maximum(freqs, 20.0), 0.0)
    return np.fft.irfft(spec * gain, n)


def _tone(freq: np.ndarray | float, t: np.ndarray, sr: int) -> np.ndarray:
    """Sine with an instantaneous frequency (Hz, scalar or per-sample) over times ``t``."""
    inst = np.broadcast_to(np.asarray(freq, dtype=np.float64), t.shape)
    phase = 2.0 * np.pi * np.cumsum(inst) / sr
    return np.sin(phase)


Generator = Callable[[np.random.Generator, np.ndarray, int], tuple[np.ndarray, str]]


def _pure_tone(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    f = _log_uniform(rng, 200, 4000)
    db, loud = _loudness(rng)
    x = _finish(_tone(f, t, sr), db, sr)
    return x, f"A {loud} {_pitch_word(f)} pure tone at {f:.0f} Hz that stays steady."


def _sweep(rising: bool) -> Generator:
    def gen(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
        lo = _log_uniform(rng, 150, 600)
        hi = _log_uniform(rng, 2000, 6000)
        f0, f1 = (lo, hi) if rising else (hi, lo)
        db, loud = _loudness(rng)
        inst = f0 * (f1 / f0) ** (t / t[-1])
        x = _finish(_tone(inst, t, sr), db, sr)
        way = "rises" if rising else "falls"
        return x, f"A {loud} sine sweep that {way} in pitch from {f0:.0f} Hz to {f1:.0f} Hz."
    return gen


def _noise_burst(shape: str) -> Generator:
    def gen(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
        frac = round(float(rng.uniform(0.5, 0.9)), 2)
        db, loud = _loudness(rng)
        n = t.size
        m = int(frac * n)
        start = int(rng.integers(0, n - m + 1))
        x = np.zeros(n)
        x[start:start + m] = _finish(_shaped_noise(rng, m, sr, shape), 0.0, sr)
        x = _finish(x, db, sr, fade=False)
        secs = m / sr
        if shape == "white":
            return x, f"A {loud} burst of white noise, a harsh hiss lasting {secs:.1f} seconds."
        return x, f"A {loud} burst of pink noise, a soft rushing sound lasting {secs:.1f} seconds."
    return gen


def _click_train(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    rate = int(rng.integers(4, 31))
    db, loud = _loudness(rng)
    x = np.zeros(t.size)
    x[(np.arange(0, t[-1], 1.0 / rate) * sr).astype(np.int64) + 1] = 1.0
    x = np.convolve(x, np.exp(-np.arange(16) / 3.0))[: t.size]  # short decaying click
    x = _finish(x, db, sr, fade=False)
    return x, f"A {loud} train of sharp clicks repeating {rate} times per second."


def _beeps(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    f = _log_uniform(rng, 500, 3500)
    n_beeps = int(rng.integers(2, 6))
    db, loud = _loudness(rng)
    period = t[-1] / n_beeps
    on = (t % period) < 0.5 * period
    x = _finish(_tone(f, t, sr) * on, db, sr)
    count = _NUMBERS[n_beeps].capitalize()
    return x, (f"{count} {loud} short {_pitch_word(f)} beeps at {f:.0f} Hz "
               "separated by silence.")


def _am_tone(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    f = _log_uniform(rng, 250, 3000)
    rate = int(rng.integers(2, 13))
    db, loud = _loudness(rng)
    env = 0.5 * (1.0 - np.cos(2.0 * np.pi * rate * t))
    x = _finish(_tone(f, t, sr) * env, db, sr)
    return x, (f"A {loud} {_pitch_word(f)} tone at {f:.0f} Hz that pulses in loudness "
               f"{rate} times per second.")


def _harmonic(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    f0 = _log_uniform(rng, 80, 400, step=5.0)
    db, loud = _loudness(rng)
    n_harm = int(min(12, (sr / 2 - 100) // f0))
    x = sum(_tone(k * f0, t, sr) / k for k in range(1, n_harm + 1))
    x = _finish(np.asarray(x), db, sr)
    return x, (f"A {loud} low buzzy harmonic tone with a fundamental of {f0:.0f} Hz "
               "and many overtones.")


def _blips(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    n_blips = int(rng.integers(2, 5))
    db = round(float(rng.uniform(-40.0, -28.0)), 1)
    f = _log_uniform(rng, 800, 2500)
    x = np.zeros(t.size)
    width = int(0.03 * sr)
    starts = np.sort(rng.choice(np.arange(0, t.size - width, width), n_blips, replace=False))
    pip = _tone(f, t[:width], sr) * np.hanning(width)
    for s in starts:
        x[s:s + width] += pip
    x = _finish(x, db, sr, fade=False)
    return x, f"Near silence with {_NUMBERS[n_blips]} brief faint blips."


def _siren(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    f = _log_uniform(rng, 600, 1500)
    rate = round(float(rng.uniform(0.8, 3.0)), 1)
    db, loud = _loudness(rng)
    inst = f * (1.0 + 0.3 * np.sin(2.0 * np.pi * rate * t))
    x = _finish(_tone(inst, t, sr), db, sr)
    return x, f"A {loud} siren-like tone that wavers up and down around {f:.0f} Hz."


def _rumble(rng: np.random.Generator, t: np.ndarray, sr: int) -> tuple[np.ndarray, str]:
    db, loud = _loudness(rng)
    x = _finish(_shaped_noise(rng, t.size, sr, "rumble"), db, sr)
    return x, f"A {loud} deep low-frequency rumble with no clear pitch."


SYNTHETIC_CLASSES: tuple[tuple[str, Generator], ...] = (
    ("pure_tone", _pure_tone),
    ("rising_sweep", _sweep(True)),
    ("falling_sweep", _sweep(False)),
    ("white_noise", _noise_burst("white")),
    ("pink_noise", _noise_burst("pink")),
    ("click_train", _click_train),
    ("beeps", _beeps),
    ("pulsing_tone", _am_tone),
    ("harmonic_buzz", _harmonic),
    ("blips", _blips),
    ("siren", _siren),
    ("rumble", _rumble),
)
"""(label, generator) of every class; the class id (target) is the position in this tuple."""


def synthetic_probe(cfg: SyntheticConfig | None = None) -> SyntheticProbe:
    """Generate the synthetic probing set.

    Args:
        cfg: size and seed (defaults: 12 classes x 8 clips, 16 kHz, seed 0).

    Returns:
        :class:`SyntheticProbe` (probe frame, waveforms, captions). Probe order is class by
        class, clip by clip; clip ids are '<label>_<jj>'.
    """
    cfg = cfg or SyntheticConfig()
    sr = cfg.sample_rate
    rows: list[dict[str, object]] = []
    waveforms: dict[str, np.ndarray] = {}
    captions: dict[str, str] = {}
    for target, (label, gen) in enumerate(SYNTHETIC_CLASSES):
        for j in range(cfg.n_per_class):
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, target, j]))
            seconds = float(rng.uniform(cfg.min_seconds, cfg.max_seconds))
            n = int(round(seconds * sr))
            t = np.arange(n, dtype=np.float64) / sr
            wave, caption = gen(rng, t, sr)
            clip_id = f"{label}_{j:02d}"
            waveforms[clip_id] = np.ascontiguousarray(wave, dtype=np.float32)
            captions[clip_id] = caption
            rows.append({
                "dataset": "synthetic", "clip_id": clip_id, "index": len(rows), "path": "",
                "label": label, "target": target, "fold": j % cfg.n_folds + 1,
                "sample_rate": sr, "n_samples": n,
            })
    return SyntheticProbe(ProbeClip.frame(rows), waveforms, captions)
