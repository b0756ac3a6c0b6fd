"""load_audio: explicit errors naming the file; explicit resampling / downmixing only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.errors import DataError
from and_toolkit.probe.audio import audio_info, load_audio, load_clips


def _write(path: Path, data: np.ndarray, sr: int) -> Path:
    sf.write(str(path), data, sr, subtype="FLOAT")
    return path


def test_loads_mono_float32(tmp_path: Path) -> None:
    wave = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    path = _write(tmp_path / "a.wav", wave, 16000)
    out = load_audio(path, 16000)
    assert out.dtype == np.float32 and out.shape == (1600,)
    np.testing.assert_array_equal(out, wave)
    assert audio_info(path) == (16000, 1600, 1)


def test_wrong_rate_names_file_and_rates(tmp_path: Path) -> None:
    path = _write(tmp_path / "fast.wav", np.zeros(4410, np.float32), 44100)
    with pytest.raises(DataError, match=r"fast\.wav.*44100 Hz.*16000 Hz"):
        load_audio(path, 16000)


def test_resample_is_explicit_polyphase(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    path = _write(tmp_path / "tone.wav", np.sin(2 * np.pi * 440 * t).astype(np.float32), 44100)
    out = load_audio(path, 16000, resample=True)
    assert out.dtype == np.float32 and out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # 1 s at 16 kHz: bin = Hz


def test_stereo_is_an_error_unless_downmixed(tmp_path: Path) -> None:
    stereo = np.stack([np.full(800, 0.2), np.full(800, 0.4)], axis=1).astype(np.float32)
    path = _write(tmp_path / "two.wav", stereo, 16000)
    with pytest.raises(DataError, match=r"two\.wav.*2 channels"):
        load_audio(path, 16000)
    np.testing.assert_allclose(load_audio(path, 16000, downmix=True), 0.3, rtol=1e-6)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.flac.*does not exist"):
        load_audio(tmp_path / "nothere.flac", 16000)
    with pytest.raises(DataError, match=r"nothere\.flac"):
        audio_info(tmp_path / "nothere.flac")


def test_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(DataError, match=r"notes\.wav.*not a readable audio file"):
        load_audio(path, 16000)
    with pytest.raises(DataError, match=r"notes\.wav"):
        audio_info(path)


def test_empty_and_nonfinite(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match=r"empty\.wav"):
        load_audio(empty, 16000)
    bad = _write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), 16000)
    with pytest.raises(DataError, match=r"nan\.wav.*NaN"):
        load_audio(bad, 16000)


def test_load_clips_stops_at_first_bad_file(tmp_path: Path) -> None:
    _write(tmp_path / "ok.wav", np.zeros(400, np.float32), 16000)
    assert [w.shape for w in load_clips(tmp_path, ["ok.wav"], 16000)] == [(400,)]
    with pytest.raises(DataError, match=r"gone\.wav"):
        load_clips(tmp_path, ["ok.wav", "gone.wav"], 16000)


def test_expected_sr_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected_sr"):
        load_audio(tmp_path / "x.wav", 0)


def test_rate_plan_records_or_refuses() -> None:
    from and_toolkit.probe.audio import RESAMPLER, rate_plan

    plan = rate_plan([16000, 44100, 44100], ["a.wav", "b.wav", "c.wav"], 16000, True)
    assert plan == {"front_end_rate": 16000, "file_rates": {"16000": 1, "44100": 2},
                    "resampled_clips": 2, "resampler": RESAMPLER}
    assert rate_plan([16000], ["a.wav"], 16000, False)["resampler"] is None
    with pytest.raises(DataError, match=r"b\.wav: sample rate is 44100 Hz.*2 of 3 clips"):
        rate_plan([16000, 44100, 22050], ["a.wav", "b.wav", "c.wav"], 16000, False)
