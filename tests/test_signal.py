"""and_toolkit.signal: waveform checks, resampling, RMS level and median frequency."""

from __future__ import annotations

import numpy as np
import pytest

from and_toolkit.signal import (
    check_sample_rate,
    check_waveform,
    check_waveforms,
    median_frequency,
    power_db,
    resample,
    rms,
    rms_dbfs,
)

SR = 16_000


def test_check_sample_rate() -> None:
    for ok in (16_000, 16_000.0, np.int64(8_000)):
        check_sample_rate(ok)
    for bad in (0, -1, 16_000.5, True, None, float("nan"), float("inf"), "16000"):
        with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
            check_sample_rate(bad)
    with pytest.raises(ValueError, match="orig_sr"):
        check_sample_rate(0, "orig_sr")


def test_check_waveform_names_what_is_wrong() -> None:
    out = check_waveform([0.0, 0.5], SR)
    assert out.dtype == np.float64 and out.shape == (2,)
    x32 = np.zeros(4, dtype=np.float32)
    assert check_waveform(x32, SR, dtype=np.float32) is x32  # no copy
    with pytest.raises(ValueError, match=r"waveform must be a 1-D \(mono\).*shape \(2, 100\)"):
        check_waveform(np.zeros((2, 100)), SR)
    with pytest.raises(ValueError, match=r"waveform is empty \(shape \(0,\)\)"):
        check_waveform(np.zeros(0), SR)
    with pytest.raises(ValueError, match=r"non-finite samples \(NaN or inf\): 2 of 4, the first "
                                         r"at index 1"):
        check_waveform(np.array([0.0, np.nan, 0.0, np.inf]), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        check_waveform(np.zeros(4), 0)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_check_waveforms() -> None:
    ok = np.zeros(10, dtype=np.float64)
    out = check_waveforms([ok, [0.1, 0.2]], SR)
    assert [w.dtype for w in out] == [np.float32, np.float32]
    assert check_waveforms([], SR) == []
    with pytest.raises(ValueError, match=r"waveforms\[1\] must be a 1-D.*shape \(2, 5\)"):
        check_waveforms([ok, np.zeros((2, 5))], SR)
    with pytest.raises(ValueError, match=r"waveforms\[0\] holds non-finite"):
        check_waveforms([np.array([0.0, np.nan])], SR)
    with pytest.raises(ValueError, match=r"waveforms\[0\] is empty \(shape \(0,\)\)"):
        check_waveforms([np.zeros(0)], SR)
    with pytest.raises(ValueError, match=r"waveforms\[0\] holds non-finite"):  # float32 overflow
        check_waveforms([np.array([1e39])], SR)
    with pytest.raises(ValueError, match="sample_rate"):
        check_waveforms([ok], 0)
    with pytest.raises(ValueError, match="sample_rate"):
        check_waveforms([ok], 16_000.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not a single array of shape \(4,\)"):
        check_waveforms(np.zeros(4), SR)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"not a single array of shape \(2, 4\)"):
        check_waveforms(np.zeros((2, 4)), SR)  # type: ignore[arg-type]


def test_resample_polyphase() -> None:
    sr_out, f0 = 48_000, 440.0
    x = np.sin(2 * np.pi * f0 * np.arange(SR) / SR).astype(np.float32)
    y = resample(x, SR, sr_out)
    assert y.dtype == np.float32 and y.shape == (3 * SR,)
    spectrum = np.abs(np.fft.rfft(y))
    assert np.argmax(spectrum) * sr_out / y.size == pytest.approx(f0, abs=1.0)
    same = resample(x, SR, SR)
    np.testing.assert_array_equal(same, x)
    assert same is not x and same.dtype == np.float32
    assert resample(x, 44_100, sr_out).size == int(np.ceil(x.size * 48_000 / 44_100))
    back = resample(resample(x, SR, 44_100), 44_100, SR)
    assert back.shape == x.shape
    with pytest.raises(ValueError, match="orig_sr=0"):
        resample(x, 0, sr_out)
    with pytest.raises(ValueError, match="target_sr=16000.5"):
        resample(x, SR, 16_000.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"1-D.*shape \(2, 3\)"):
        resample(np.zeros((2, 3)), SR, sr_out)


def test_resample_computes_in_float64() -> None:
    from scipy.signal import resample_poly

    x = np.random.default_rng(0).uniform(-1, 1, 1000).astype(np.float32)
    want = resample_poly(x.astype(np.float64), 3, 1).astype(np.float32)
    np.testing.assert_array_equal(resample(x, SR, 48_000), want)


def test_levels() -> None:
    x = np.full(100, 0.5)
    assert rms(x) == 0.5
    assert rms_dbfs(x) == pytest.approx(20 * np.log10(0.5), abs=1e-12)
    assert rms_dbfs(np.zeros(10)) == -120.0
    assert rms_dbfs(np.full(10, 1e-9)) == -120.0  # below the floor
    np.testing.assert_array_equal(power_db(np.array([1.0, 0.01, 0.0])), [0.0, -20.0, -120.0])
    assert rms(np.array([3.0, -4.0], dtype=np.float32)) == pytest.approx(np.sqrt(12.5))


def test_rms_dbfs_is_the_descriptor_formula() -> None:
    """Bit-identical to ``max(10 log10(max(mean(x**2), 1e-12)), -120)`` in float64."""
    rng = np.random.default_rng(1)
    for scale in (1e-7, 1e-3, 0.1, 1.0):
        x = (scale * rng.standard_normal(4001)).astype(np.float32)
        x64 = x.astype(np.float64)
        want = float(np.maximum(10.0 * np.log10(np.maximum(np.array([np.mean(x64**2)]), 1e-12)),
                                -120.0)[0])
        assert rms_dbfs(x) == want


def test_median_frequency() -> None:
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 1000 * t)
    assert median_frequency(tone, SR) == 1000.0
    assert median_frequency(np.zeros(100), SR) == 0.0
    offset = tone + 5.0  # DC dominates unless removed
    assert median_frequency(offset, SR) == 0.0
    assert median_frequency(offset, SR, remove_dc=True) == 1000.0
    assert median_frequency(np.full(10, 0.5), SR, remove_dc=True) == 0.0  # DC only: silent
