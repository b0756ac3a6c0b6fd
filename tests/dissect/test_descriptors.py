"""Tests of the acoustic-descriptor captioner on synthetic signals (and a slice of ESC-50)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from and_toolkit.dissect.descriptors import (
    THRESHOLD_FIELDS,
    Descriptors,
    Thresholds,
    adjectives,
    combine,
    describe,
    esc50_thresholds,
    fit_thresholds,
    measure,
)

SR = 16_000
T = np.arange(5 * SR) / SR


def tone(freq: float, amp: float = 0.1) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * T)).astype(np.float32)


def click_train(rate_hz: float = 4.0, amp: float = 0.9) -> np.ndarray:
    x = np.zeros(T.size, dtype=np.float32)
    x[:: int(SR / rate_hz)] = amp
    return x


@pytest.fixture(scope="module")
def ref() -> Thresholds:
    return esc50_thresholds()


def test_tones_median_frequency_and_pitch(ref: Thresholds) -> None:
    hi, lo = measure(tone(4000), SR), measure(tone(100), SR)
    assert hi.median_freq_hz == pytest.approx(4000, abs=1)
    assert lo.median_freq_hz == pytest.approx(100, abs=1)
    assert "high-pitched" in adjectives(hi, ref) and "bright" in adjectives(hi, ref)
    assert "low-pitched" in adjectives(lo, ref) and "dull" in adjectives(lo, ref)
    # A pure tone is tonal and steady, with no onsets and no periodicity.
    for d in (hi, lo):
        assert d.flatness < 1e-6 and d.n_onsets == 0 and d.periodicity == 0.0
        assert {"tonal", "steady"} <= set(adjectives(d, ref))


def test_rms_level_in_dbfs(ref: Thresholds) -> None:
    noise = np.random.default_rng(0).standard_normal(T.size).astype(np.float32)
    loud = measure(0.5 * noise, SR)  # RMS 0.5 = -6.02 dBFS
    assert loud.rms_dbfs == pytest.approx(-6.02, abs=0.05)
    assert loud.flatness > 0.5  # white noise: ~0.56
    assert adjectives(loud, ref)[:1] == ["loud"] and "noisy" in adjectives(loud, ref)
    quiet = measure(tone(200, amp=0.01 * np.sqrt(2)), SR)  # RMS 0.01 = -40 dBFS
    assert quiet.rms_dbfs == pytest.approx(-40.0, abs=0.05)
    assert adjectives(quiet, ref)[0] in {"quiet", "soft"}


def test_click_train_is_repetitive(ref: Thresholds) -> None:
    d = measure(click_train(4.0), SR)
    # 20 clicks; the one at t = 0 has no preceding frame, so it is not an onset.
    assert d.n_onsets == 19 and d.onset_rate_hz == pytest.approx(19 / 5)
    assert d.periodicity > 0.7
    words = adjectives(d, ref)
    assert "repetitive" in words and "intermittent" in words
    one = measure(np.roll(click_train(0.2), SR), SR)  # a single click at t = 1 s
    assert one.n_onsets == 1 and "repetitive" not in adjectives(one, ref)


def test_silence_and_edge_cases(ref: Thresholds) -> None:
    d = measure(np.zeros(SR, dtype=np.float32), SR)
    assert d.rms_dbfs == -120.0 and d.median_freq_hz == 0.0 and d.silence_ratio == 1.0
    assert describe(d, ref) == "It is silent."
    short = measure(np.full(10, 0.1, dtype=np.float32), SR)  # shorter than one frame
    assert short.duration_s == pytest.approx(10 / SR)
    with pytest.raises(ValueError, match="1-D"):
        measure(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError, match="empty"):
        measure(np.zeros(0), SR)
    with pytest.raises(ValueError, match="NaN"):
        measure(np.array([0.0, np.nan]), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        measure(np.zeros(100), 0)


def test_fit_thresholds_percentiles() -> None:
    base = measure(tone(1000), SR).model_dump()
    ds = [Descriptors(**{**base, "rms_dbfs": float(v)}) for v in range(-50, -9)]  # 41 clips
    th = fit_thresholds(ds, source="synthetic")
    q = th.q("rms_dbfs")
    assert (q.p10, q.p25, q.p50, q.p75, q.p90) == (-46, -40, -30, -20, -14)
    assert th.n_clips == 41 and set(th.quantiles) == set(THRESHOLD_FIELDS)
    assert Thresholds.model_validate_json(th.model_dump_json()) == th
    with pytest.raises(ValueError, match="empty"):
        fit_thresholds([])
    with pytest.raises(ValueError, match="'nope'"):
        th.q("nope")


def test_describe_and_combine_format(ref: Thresholds) -> None:
    d = measure(0.5 * click_train(4.0), SR)
    sentence = describe(d, ref)
    assert sentence.startswith("It is ") and sentence.endswith(".")
    words = adjectives(d, ref)
    assert sentence == "It is " + ", ".join(words[:-1]) + " and " + words[-1] + "."
    assert combine("A dog barks", "It is loud.") == "A dog barks. It is loud."
    assert combine("A dog barks! ", "It is loud.") == "A dog barks! It is loud."
    assert combine("A dog barks.", "") == "A dog barks."
    assert combine("", "It is loud.") == "It is loud."


def _esc50_dir() -> Path | None:
    env = os.environ.get("AND_DATA_DIR")
    path = Path(env) / "esc50" if env else None
    return path if path and (path / "meta" / "esc50.csv").is_file() else None


@pytest.mark.esc50
@pytest.mark.skipif(_esc50_dir() is None, reason="needs $AND_DATA_DIR/esc50")
def test_esc50_engines_are_lower_than_alarms() -> None:
    sf = pytest.importorskip("soundfile")
    root = _esc50_dir()
    assert root is not None
    with open(root / "meta" / "esc50.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    mdf: dict[str, list[float]] = {"engine": [], "clock_alarm": []}
    for cat in mdf:
        for r in [r for r in rows if r["category"] == cat][:10]:
            x, sr = sf.read(root / "audio" / r["filename"].replace(".wav", ".flac"),
                            dtype="float32")
            mdf[cat].append(measure(x, sr).median_freq_hz)
    assert np.median(mdf["engine"]) < 300 < 1500 < np.median(mdf["clock_alarm"])
