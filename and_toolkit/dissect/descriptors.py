"""A deterministic acoustic-descriptor captioner (numpy only).

Captions of audio LMs name sound sources well but rarely say "loud" or "high-pitched", which
Module C and the adjective statistics need. This module measures a few classic descriptors
from the waveform (:func:`measure`), turns them into adjectives relative to dataset
percentiles (:func:`fit_thresholds`, :func:`describe`) and appends the sentence to a caption
(:func:`combine`): "A dog barks." + "It is loud, high-pitched and intermittent."

Framing: Hann-windowed frames of ``n_fft`` = the power of two nearest to 32 ms (512 at
16 kHz), hop ``n_fft // 2``. A frame is *silent* if its level is below
max(loudest frame - 35 dB, -70 dBFS).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from and_toolkit.signal import check_waveform, median_frequency, power_db, rms_dbfs

DESCRIBER_ID = "descriptors-v1"
_SILENCE_REL_DB = 35.0
_SILENCE_ABS_DBFS = -70.0
_EPS = 1e-12


class Descriptors(BaseModel):
    """Acoustic descriptors of one clip.

    Attributes:
        rms_dbfs: whole-clip RMS level, dB re full scale (1.0); -120 for digital silence.
        median_freq_hz: median frequency of the whole-clip power spectrum |rFFT|^2 (DC bin
            included, no windowing): smallest f with cumulative power >= half the total
            (reference-spec §9 MDF), Hz.
        centroid_hz: spectral centroid of the mean magnitude spectrum of non-silent frames, Hz.
        flatness: mean over non-silent frames of the power-spectrum flatness
            (geometric / arithmetic mean), in [0, 1]; ~0.56 for white noise, ~0 for a tone.
        onset_rate_hz: detected onsets per second of clip.
        n_onsets: number of detected onsets: peaks of the spectral flux (positive increments
            of log-compressed magnitude, summed over bins, zero in silent frames and below a
            floor of 0.01 per bin) above max(mean + 2 std, 0.25 max), >= 50 ms apart.
        periodicity: max of the normalised autocorrelation of the onset envelope over lags
            0.1-2.0 s, in [-1, 1] (high = repetitive).
        energy_std_db: stationarity: std of frame levels in dB over non-silent frames (low =
            steady).
        silence_ratio: fraction of silent frames, in [0, 1].
        dynamic_range_db: 95th minus 5th percentile of frame levels, dB.
        max_rise_db: largest rise of frame level over 2 hops (32 ms at 16 kHz), dB (sudden).
        active_s: duration of non-silent frames, s.
        duration_s: clip duration, s.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rms_dbfs: float
    median_freq_hz: float
    centroid_hz: float
    flatness: float
    onset_rate_hz: float
    n_onsets: int
    periodicity: float
    energy_std_db: float
    silence_ratio: float
    dynamic_range_db: float
    max_rise_db: float
    active_s: float
    duration_s: float


#: Descriptors that get dataset percentiles (``n_onsets`` and ``duration_s`` do not).
THRESHOLD_FIELDS: tuple[str, ...] = (
    "rms_dbfs", "median_freq_hz", "centroid_hz", "flatness", "onset_rate_hz", "periodicity",
    "energy_std_db", "silence_ratio", "dynamic_range_db", "max_rise_db", "active_s")


class Quantiles(BaseModel):
    """Percentiles of one descriptor over a dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p10: float
    p25: float
    p50: float
    p75: float
    p90: float


class Thresholds(BaseModel):
    """Dataset percentiles of every descriptor, the reference for :func:`describe`.

    Serialise with ``model_dump_json()`` into caption provenance.

    Attributes:
        n_clips: number of clips the percentiles were computed on.
        source: free text naming the dataset.
        quantiles: descriptor name -> its percentiles.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_clips: int
    source: str = ""
    quantiles: dict[str, Quantiles]

    def q(self, name: str) -> Quantiles:
        """Percentiles of descriptor ``name``.

        Raises:
            ValueError: if ``name`` has no percentiles.
        """
        if name not in self.quantiles:
            raise ValueError(f"thresholds have no descriptor {name!r}")
        return self.quantiles[name]


#: Percentiles (10/25/50/75/90) measured with this module on all 2000 ESC-50 clips (16 kHz
#: FLAC, v1 of the rules), for describing single clips without a dataset at hand.
_ESC50_QUANTILES: dict[str, tuple[float, float, float, float, float]] = {
    "rms_dbfs": (-38.85, -30.95, -23.2, -17.92, -13.86),
    "median_freq_hz": (79.76, 272.8, 733.5, 1519, 2956),
    "centroid_hz": (879.1, 1360, 1972, 2659, 3369),
    "flatness": (0.001861, 0.00756, 0.03169, 0.08899, 0.172),
    "onset_rate_hz": (0.6, 1, 1.6, 2.2, 2.8),
    "periodicity": (0.1543, 0.2216, 0.3643, 0.5541, 0.7029),
    "energy_std_db": (2.002, 3.525, 6.551, 8.797, 10.28),
    "silence_ratio": (0, 0, 0, 0.4252, 0.746),
    "dynamic_range_db": (6.455, 11.55, 24.06, 52.29, 99.73),
    "max_rise_db": (4.227, 7.546, 14.64, 27.3, 41.04),
    "active_s": (1.264, 2.86, 4.976, 4.976, 4.976),
}


def esc50_thresholds() -> Thresholds:
    """The ESC-50 percentiles measured with this module (a default reference population).

    Returns:
        Thresholds with ``source="esc50 (built-in, descriptors-v1)"``, ``n_clips=2000``.
    """
    q = {k: Quantiles(p10=v[0], p25=v[1], p50=v[2], p75=v[3], p90=v[4])
         for k, v in _ESC50_QUANTILES.items()}
    return Thresholds(n_clips=2000, source="esc50 (built-in, descriptors-v1)", quantiles=q)


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = 1 + (len(x) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def _onsets(flux: np.ndarray, min_gap: int) -> np.ndarray:
    """Indices of spectral-flux peaks: local maxima above max(mean + 2 std, 0.25 max)."""
    if flux.size < 3 or flux.max() <= 0:
        return np.zeros(0, dtype=np.int64)
    thr = max(flux.mean() + 2.0 * flux.std(), 0.25 * flux.max())
    cand = np.flatnonzero((flux >= thr) & (flux > 0))
    peaks: list[int] = []
    for i in cand:
        lo, hi = max(0, i - min_gap), min(len(flux), i + min_gap + 1)
        if flux[i] < flux[lo:hi].max():
            continue
        if peaks and i - peaks[-1] <= min_gap:
            continue
        peaks.append(int(i))
    return np.asarray(peaks, dtype=np.int64)


def _periodicity(env: np.ndarray, frame_rate: float) -> float:
    e = env - env.mean()
    denom = float(np.dot(e, e))
    lo, hi = int(round(0.1 * frame_rate)), int(round(2.0 * frame_rate))
    hi = min(hi, len(e) - 1)
    if denom <= 0 or hi < lo or lo < 1:
        return 0.0
    ac = np.correlate(e, e, mode="full")[len(e) - 1:] / denom
    return float(ac[lo:hi + 1].max())


def measure(waveform: np.ndarray, sample_rate: int) -> Descriptors:
    """Measure the acoustic descriptors of one clip.

    Args:
        waveform: float array [n_samples], mono, full scale = 1.0.
        sample_rate: Hz (> 0).

    Returns:
        The clip's :class:`Descriptors`.

    Raises:
        ValueError: if the waveform is not 1-D, empty or non-finite, or the rate is not a
            positive integer (see :func:`and_toolkit.signal.check_waveform`).
    """
    x = check_waveform(waveform, sample_rate, dtype=np.float64)
    n_fft = int(2 ** round(np.log2(0.032 * sample_rate)))
    hop = n_fft // 2
    frame_rate = sample_rate / hop
    duration = x.size / sample_rate

    frames = _frames(x, n_fft, hop)
    level = power_db(np.mean(frames**2, axis=1))
    silent_below = max(float(level.max()) - _SILENCE_REL_DB, _SILENCE_ABS_DBFS)
    active = level >= silent_below
    spec = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)

    if active.any():
        mag = spec[active].mean(axis=0)
        centroid = float((freqs * mag).sum() / max(mag.sum(), _EPS))
        p = spec[active] ** 2 + _EPS
        flatness = float(np.mean(np.exp(np.mean(np.log(p), axis=1)) / np.mean(p, axis=1)))
        energy_std = float(level[active].std())
    else:
        centroid, flatness, energy_std = 0.0, 0.0, 0.0

    logspec = np.log1p(100.0 * spec / max(float(spec.max()), _EPS))
    flux = np.concatenate([[0.0], np.maximum(np.diff(logspec, axis=0), 0.0).sum(axis=1)])
    flux[~active | (flux < 0.01 * spec.shape[1])] = 0.0  # floor: leakage ripple of steady tones
    peaks = _onsets(flux, min_gap=max(1, int(round(0.05 * frame_rate))))
    rise = level[2:] - level[:-2] if level.size > 2 else np.zeros(1)

    return Descriptors(
        rms_dbfs=rms_dbfs(x),
        median_freq_hz=median_frequency(x, sample_rate),
        centroid_hz=centroid,
        flatness=flatness,
        onset_rate_hz=float(peaks.size / duration),
        n_onsets=int(peaks.size),
        periodicity=_periodicity(flux, frame_rate),
        energy_std_db=energy_std,
        silence_ratio=float(1.0 - active.mean()),
        dynamic_range_db=float(np.percentile(level, 95) - np.percentile(level, 5)),
        max_rise_db=float(max(rise.max(), 0.0)),
        active_s=float(active.sum() * hop / sample_rate),
        duration_s=float(duration),
    )


def fit_thresholds(descriptors: list[Descriptors], source: str = "") -> Thresholds:
    """Percentiles (10/25/50/75/90) of each descriptor over a dataset.

    Args:
        descriptors: one per clip (at least 1).
        source: free text naming the dataset, stored in the result.

    Returns:
        The :class:`Thresholds`.

    Raises:
        ValueError: if ``descriptors`` is empty.
    """
    if not descriptors:
        raise ValueError("descriptors is empty: need at least one clip to fit thresholds")
    q = {}
    for name in THRESHOLD_FIELDS:
        vals = np.array([getattr(d, name) for d in descriptors], dtype=np.float64)
        p = np.percentile(vals, [10, 25, 50, 75, 90])
        q[name] = Quantiles(p10=p[0], p25=p[1], p50=p[2], p75=p[3], p90=p[4])
    return Thresholds(n_clips=len(descriptors), source=source, quantiles=q)


def adjectives(d: Descriptors, t: Thresholds) -> list[str]:
    """The acoustic adjectives of a clip relative to dataset percentiles ``t``.

    Rules (pXX = the dataset's XXth percentile of that descriptor), at most one per group
    (two for rhythm). Digital silence (rms <= -90 dBFS) gives just "silent".

    - loudness: rms >= p75 "loud"; rms <= p25 "soft" if also centroid <= p50, else "quiet".
    - pitch: median frequency >= p75 "high-pitched"; <= p10 "deep"; <= p25 "low-pitched".
    - brightness: centroid >= p75 "bright"; <= p25 "dull".
    - texture: flatness >= p75 "noisy"; <= p25 "tonal"; else "clear" if dynamic range >= p75.
    - rhythm: periodicity >= p75 and >= 3 onsets "repetitive", plus "rhythmic" if also
      periodicity >= p90 and >= 4 onsets.
    - envelope: silence <= p25 and energy std <= p25 "steady"; silence <= p25 and energy std
      <= p50 "continuous"; silence >= p75 and >= 2 onsets "intermittent"; <= 2 onsets and max
      rise >= p75 "sudden".
    - extent: active duration <= p25 "brief".

    Args:
        d: the clip's descriptors.
        t: dataset thresholds.

    Returns:
        Adjectives in the order loudness, pitch, brightness, texture, rhythm, envelope, extent.
    """
    if d.rms_dbfs <= -90.0:
        return ["silent"]
    out: list[str] = []
    rms, mdf, cen = t.q("rms_dbfs"), t.q("median_freq_hz"), t.q("centroid_hz")
    if d.rms_dbfs >= rms.p75:
        out.append("loud")
    elif d.rms_dbfs <= rms.p25:
        out.append("soft" if d.centroid_hz <= cen.p50 else "quiet")
    if d.median_freq_hz >= mdf.p75:
        out.append("high-pitched")
    elif d.median_freq_hz <= mdf.p10:
        out.append("deep")
    elif d.median_freq_hz <= mdf.p25:
        out.append("low-pitched")
    if d.centroid_hz >= cen.p75:
        out.append("bright")
    elif d.centroid_hz <= cen.p25:
        out.append("dull")
    flat = t.q("flatness")
    if d.flatness >= flat.p75:
        out.append("noisy")
    elif d.flatness <= flat.p25:
        out.append("tonal")
    elif d.dynamic_range_db >= t.q("dynamic_range_db").p75:
        out.append("clear")
    per = t.q("periodicity")
    if d.periodicity >= per.p75 and d.n_onsets >= 3:
        out.append("repetitive")
        if d.periodicity >= per.p90 and d.n_onsets >= 4:
            out.append("rhythmic")
    sil, est = t.q("silence_ratio"), t.q("energy_std_db")
    if d.silence_ratio <= sil.p25 and d.energy_std_db <= est.p25:
        out.append("steady")
    elif d.silence_ratio <= sil.p25 and d.energy_std_db <= est.p50:
        out.append("continuous")
    elif d.silence_ratio >= sil.p75 and d.n_onsets >= 2:
        out.append("intermittent")
    elif d.n_onsets <= 2 and d.max_rise_db >= t.q("max_rise_db").p75:
        out.append("sudden")
    if d.active_s <= t.q("active_s").p25:
        out.append("brief")
    return out


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def describe(d: Descriptors, t: Thresholds) -> str:
    """One sentence of acoustic adjectives, e.g. "It is loud, high-pitched and repetitive."

    Args:
        d: the clip's descriptors.
        t: dataset thresholds (see :func:`adjectives` for the rules).

    Returns:
        The sentence, or "" when no descriptor is extreme.
    """
    words = adjectives(d, t)
    return f"It is {_join(words)}." if words else ""


def combine(caption: str, sentence: str) -> str:
    """Append a descriptor sentence to a caption.

    Args:
        caption: the caption (may be empty).
        sentence: the descriptor sentence (may be empty).

    Returns:
        ``caption`` + (a period if it lacks final punctuation) + " " + ``sentence``.
    """
    caption, sentence = caption.strip(), sentence.strip()
    if not sentence:
        return caption
    if not caption:
        return sentence
    if caption[-1] not in ".!?":
        caption += "."
    return f"{caption} {sentence}"
