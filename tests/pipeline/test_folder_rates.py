"""Issue 9 item 11: a folder probing set at 44.1 kHz stereo is resampled to the front end's
16 kHz (recorded in the probe's provenance), or refused, never featurized at its own rate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.errors import DataError
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.data_stages import stage_probe
from and_toolkit.records.models import ProbeClip
from and_toolkit.run import Run
from and_toolkit.signal import median_frequency

TONES = {"a1": 1000.0, "a2": 1000.0, "b1": 3000.0, "b2": 3000.0}  # Hz
FILE_SR, SECONDS = 44100, 0.5


def _folder(root: Path) -> Path:
    """Four stereo 44.1 kHz WAVs (a tone in both channels) and labels.csv."""
    data = root / "clips"
    data.mkdir()
    t = np.arange(int(FILE_SR * SECONDS)) / FILE_SR
    lines = ["filename,label"]
    for name, hz in TONES.items():
        tone = 0.5 * np.sin(2 * np.pi * hz * t)
        sf.write(str(data / f"{name}.wav"), np.stack([tone, 0.5 * tone], axis=1), FILE_SR,
                 subtype="PCM_16")
        lines.append(f"{name}.wav,{name[0]}")
    (data / "labels.csv").write_text("\n".join(lines) + "\n")
    return data


def _context(root: Path, **probe: Any) -> Context:
    cfg = parse_config({"name": "rates", "targets": [{"id": "cnn", "arch": "cnn"}],
                        "record": {"k": 2},  # of 4 clips
                        "probe": {"kind": "folder", "folder": str(_folder(root)),
                                  "labels_csv": "labels.csv", **probe}})
    return Context(cfg=cfg, run=Run.at(root / "run"), cache=Cache(root / "cache"),
                   progress=False)


def test_a_44k_stereo_folder_is_resampled_to_the_front_end_rate(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    info = stage_probe(ctx)
    assert ctx.probe()["sample_rate"].to_list() == [FILE_SR] * 4  # the files' own rate
    audio = ctx.run.provenance(ProbeClip)["audio"]
    assert audio == info["audio"]
    assert audio["front_end_rate"] == ctx.sample_rate() == 16000
    assert audio["file_rates"] == {"44100": 4} and audio["resampled_clips"] == 4
    assert audio["resampler"].startswith("scipy.signal.resample_poly") and audio["downmix"]
    waves = ctx.waveforms()
    for wave, hz in zip(waves, TONES.values(), strict=True):
        assert wave.dtype == np.float32 and wave.shape == (int(16000 * SECONDS),)
        # read at 16 kHz, the tone keeps its pitch (at 44.1 kHz read as 16 kHz it would sit
        # at hz * 16000 / 44100): median frequency within one FFT bin (1 / 0.5 s = 2 Hz)
        assert abs(median_frequency(wave, ctx.sample_rate()) - hz) <= 2.0
    assert ctx.features().shape[0] == 4


def test_resampling_disabled_refuses_the_folder(tmp_path: Path) -> None:
    ctx = _context(tmp_path, resample=False)
    with pytest.raises(DataError, match=r"a1\.wav: sample rate is 44100 Hz, the front end "
                       r"expects 16000 Hz \(4 of 4 clips differ\); set probe.resample = true"):
        stage_probe(ctx)


def test_downmix_disabled_refuses_stereo(tmp_path: Path) -> None:
    ctx = _context(tmp_path, downmix=False)
    stage_probe(ctx)
    with pytest.raises(DataError, match=r"a1\.wav: has 2 channels.*probe.downmix = true"):
        ctx.waveforms()
