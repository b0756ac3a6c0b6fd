"""Probe folders as users have them: no label CSV, no folds, any rate; bad files named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.errors import DataError
from and_toolkit.probe.folder import FolderProbeConfig, folder_probe, unlabelled_probe


def _wav(path: Path, seconds: float = 0.2, rate: int = 44100, channels: int = 2) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = 0.1 * np.random.default_rng(0).standard_normal((int(seconds * rate), channels))
    sf.write(path, data.astype(np.float32), rate)
    return path


def test_unlabelled_folder_lists_audio_recursively(tmp_path: Path) -> None:
    _wav(tmp_path / "b.wav", rate=44100)
    _wav(tmp_path / "sub" / "a.flac", rate=8000, channels=1)
    (tmp_path / "notes.txt").write_text("not audio")
    probe = unlabelled_probe(tmp_path, "mine")
    assert probe["path"].to_list() == ["b.wav", "sub/a.flac"]
    assert probe["clip_id"].to_list() == ["b", "a"]
    assert probe["sample_rate"].to_list() == [44100, 8000]
    assert set(probe["label"]) == {"unlabelled"} and set(probe["fold"]) == {1}


def test_folder_without_audio_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=rf"{tmp_path}: no audio files"):
        unlabelled_probe(tmp_path, "mine")


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope: probe folder does not exist"):
        unlabelled_probe(tmp_path / "nope", "mine")


def test_empty_file_is_named(tmp_path: Path) -> None:
    _wav(tmp_path / "ok.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty.wav: not a readable audio file"):
        unlabelled_probe(tmp_path, "mine")


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "junk.flac").write_bytes(b"this is not flac" * 10)
    with pytest.raises(DataError, match=r"junk.flac: not a readable audio file"):
        unlabelled_probe(tmp_path, "mine")


def test_file_without_samples_is_named(tmp_path: Path) -> None:
    sf.write(tmp_path / "zero.wav", np.zeros((0, 1), np.float32), 16000)
    with pytest.raises(DataError, match=r"zero.wav: (audio file has no samples|not a readable)"):
        unlabelled_probe(tmp_path, "mine")


def test_same_stem_twice_is_named(tmp_path: Path) -> None:
    _wav(tmp_path / "x" / "dog.wav")
    _wav(tmp_path / "y" / "dog.wav")
    with pytest.raises(DataError, match=r"y/dog.wav: clip id 'dog' is also the stem of .*x/dog"):
        unlabelled_probe(tmp_path, "mine")


def test_labels_csv_without_folds_and_a_missing_file(tmp_path: Path) -> None:
    _wav(tmp_path / "a.wav")
    (tmp_path / "labels.csv").write_text("filename,label\na.wav,dog\n")
    probe = folder_probe(tmp_path, FolderProbeConfig(dataset="mine"))
    assert probe["fold"].to_list() == [1] and probe["label"].to_list() == ["dog"]
    (tmp_path / "labels.csv").write_text("filename,label\na.wav,dog\ngone.wav,cat\n")
    with pytest.raises(DataError, match=r"gone.wav: audio file does not exist"):
        folder_probe(tmp_path, FolderProbeConfig(dataset="mine"))
