"""The built-in synthetic probing set: deterministic, >= 10 classes, small and fast."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest

from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe
from and_toolkit.records import ProbeClip
from and_toolkit.store import write_records


def _digest(waves: dict[str, np.ndarray], captions: dict[str, str]) -> str:
    h = hashlib.sha256()
    for cid in sorted(waves):
        h.update(cid.encode() + waves[cid].tobytes() + captions[cid].encode())
    return h.hexdigest()


def test_deterministic_same_bytes(tmp_path: Path) -> None:
    a = synthetic_probe()
    b = synthetic_probe()
    assert _digest(a.waveforms, a.captions) == _digest(b.waveforms, b.captions)
    pa = write_records(ProbeClip, a.probe, tmp_path / "a.parquet")
    pb = write_records(ProbeClip, b.probe, tmp_path / "b.parquet")
    assert pa.read_bytes() == pb.read_bytes()
    c = synthetic_probe(SyntheticConfig(seed=1))
    assert _digest(a.waveforms, a.captions) != _digest(c.waveforms, c.captions)


def test_shape_classes_folds_and_captions() -> None:
    t0 = time.perf_counter()
    p = synthetic_probe()
    assert time.perf_counter() - t0 < 2.0
    ProbeClip.validate_frame(p.probe, require_rows=True)
    assert p.probe["label"].n_unique() >= 10
    assert p.probe.group_by("label").len()["len"].unique().to_list() == [8]
    assert sorted(p.probe["fold"].unique().to_list()) == [1, 2, 3, 4]
    assert p.probe["index"].to_list() == list(range(p.probe.height))
    for row in p.probe.iter_rows(named=True):
        wave = p.waveforms[row["clip_id"]]
        assert wave.dtype == np.float32 and wave.shape == (row["n_samples"],)
        assert 16000 <= wave.size <= 32000
        assert np.isfinite(wave).all() and 0 < np.abs(wave).max() <= 1.0
        assert p.captions[row["clip_id"]].endswith(".")
    assert len(set(p.captions.values())) > 0.75 * len(p.captions)  # params vary within class


def test_captions_follow_parameters() -> None:
    p = synthetic_probe()
    for cid, text in p.captions.items():
        peak_db = 20 * np.log10(np.abs(p.waveforms[cid]).max())
        if text.startswith("A loud "):
            assert peak_db >= -10.05
        if text.startswith("A quiet "):
            assert peak_db < -19.95
        if cid.startswith("pure_tone") and "high-pitched" in text:
            hz = float(text.split(" at ")[1].split(" Hz")[0])
            assert hz >= 1500
            spec = np.abs(np.fft.rfft(p.waveforms[cid]))
            peak_hz = np.argmax(spec) * 16000 / p.waveforms[cid].size
            assert abs(peak_hz - hz) < 5


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_seconds"):
        SyntheticConfig(min_seconds=2.0, max_seconds=1.0)
    small = synthetic_probe(SyntheticConfig(n_per_class=2, n_folds=2))
    assert small.probe.height == 2 * small.probe["label"].n_unique()
