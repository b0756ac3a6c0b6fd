"""folder_probe: CSV + folder of audio -> ProbeClip frame, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from and_toolkit.errors import DataError
from and_toolkit.probe.folder import FolderProbeConfig, folder_probe, unlisted_files
from and_toolkit.records import ProbeClip


def _dataset(root: Path, rows: list[tuple[str, str]], header: str = "file,kind") -> Path:
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    for name, _ in rows:
        sf.write(str(root / "wavs" / name), np.zeros(320, np.float32), 8000)
    (root / "labels.csv").write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return root


CFG = FolderProbeConfig(dataset="mine", audio_dir="wavs", filename_col="file", label_col="kind")


def test_custom_columns_default_fold_and_targets(tmp_path: Path) -> None:
    root = _dataset(tmp_path, [("b.wav", "dog"), ("a.wav", "cat"), ("c.wav", "dog")])
    df = folder_probe(root, CFG)
    ProbeClip.validate_frame(df)
    assert df["clip_id"].to_list() == ["b", "a", "c"]  # CSV order, not sorted
    assert df["index"].to_list() == [0, 1, 2]
    assert df["path"].to_list() == ["wavs/b.wav", "wavs/a.wav", "wavs/c.wav"]
    assert df["target"].to_list() == [1, 0, 1]  # sorted distinct labels: cat=0, dog=1
    assert df["fold"].to_list() == [1, 1, 1]
    assert df["sample_rate"].to_list() == [8000] * 3
    assert df["n_samples"].to_list() == [320] * 3


def test_target_and_fold_columns(tmp_path: Path) -> None:
    root = tmp_path
    (root / "wavs").mkdir()
    sf.write(str(root / "wavs" / "x.wav"), np.zeros(100, np.float32), 8000)
    (root / "labels.csv").write_text("file,kind,id,split\nx.wav,dog,7,3\n")
    cfg = CFG.model_copy(update={"target_col": "id", "fold_col": "split"})
    df = folder_probe(root, cfg)
    assert (df["target"][0], df["fold"][0]) == (7, 3)
    (root / "labels.csv").write_text("file,kind,id,split\nx.wav,dog,seven,3\n")
    with pytest.raises(DataError, match=r"labels\.csv.*'id'.*not an integer"):
        folder_probe(root, cfg)


def test_missing_column_csv_dir_and_audio(tmp_path: Path) -> None:
    root = _dataset(tmp_path, [("a.wav", "cat")], header="file,label")
    with pytest.raises(DataError, match=r"labels\.csv.*missing column.*'kind'"):
        folder_probe(root, CFG)
    with pytest.raises(DataError, match="does not exist"):
        folder_probe(tmp_path / "nope", CFG)
    with pytest.raises(DataError, match=r"other\.csv.*does not exist"):
        folder_probe(root, CFG.model_copy(update={"csv": "other.csv"}))
    (root / "labels.csv").write_text("file,kind\nmissing.wav,cat\n")
    with pytest.raises(DataError, match=r"missing\.wav.*does not exist"):
        folder_probe(root, CFG)


def test_duplicate_clip_ids_and_empty_cells(tmp_path: Path) -> None:
    root = _dataset(tmp_path, [("a.wav", "cat")])
    (root / "labels.csv").write_text("file,kind\na.wav,cat\na.wav,dog\n")
    with pytest.raises(DataError, match=r"clip id 'a' appears in rows 0 and 1"):
        folder_probe(root, CFG)
    (root / "labels.csv").write_text("file,kind\n../../etc/passwd,cat\n")
    with pytest.raises(DataError, match=r"row 0.*must be a path inside the dataset"):
        folder_probe(root, CFG)
    (root / "labels.csv").write_text("file,kind\na.wav,\n")
    with pytest.raises(DataError, match=r"'kind' is empty in row"):
        folder_probe(root, CFG)


def test_audio_ext_replaces_extension(tmp_path: Path) -> None:
    (tmp_path / "wavs").mkdir()
    sf.write(str(tmp_path / "wavs" / "a.flac"), np.zeros(100, np.float32), 8000)
    (tmp_path / "labels.csv").write_text("file,kind\na.wav,cat\n")
    df = folder_probe(tmp_path, CFG.model_copy(update={"audio_ext": ".flac"}))
    assert df["path"].to_list() == ["wavs/a.flac"]


def test_audio_files_without_a_row_are_refused_or_dropped(tmp_path: Path) -> None:
    """Files of the audio folder that the CSV does not list are an error naming how many and a
    few of them (they used to be dropped silently); ``unlisted = "drop"`` leaves them out."""
    root = _dataset(tmp_path, [("a.wav", "cat"), ("b.wav", "dog")])
    for name in ("c.wav", "d.flac", "sub/e.wav", "f.wav", "g.wav"):
        (root / "wavs" / name).parent.mkdir(exist_ok=True)
        sf.write(str(root / "wavs" / name), np.zeros(320, np.float32), 8000)
    (root / "wavs" / "notes.txt").write_text("not audio")
    with pytest.raises(DataError, match=r"labels\.csv: 5 audio file\(s\) under .*wavs have no "
                       r"row \(wavs/c\.wav, wavs/d\.flac, wavs/f\.wav, \.\.\. \(2 more\)\); the "
                       r"CSV lists 2.*unlisted = 'drop'.*--drop-unlisted"):
        folder_probe(root, CFG)
    df = folder_probe(root, CFG.model_copy(update={"unlisted": "drop"}))
    assert df["clip_id"].to_list() == ["a", "b"]
    assert unlisted_files(root, CFG, df["path"].to_list()) == [
        "wavs/c.wav", "wavs/d.flac", "wavs/f.wav", "wavs/g.wav", "wavs/sub/e.wav"]
