"""ESC-50 loader: real data when $AND_DATA_DIR is set, clear errors otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from and_toolkit.errors import DataError
from and_toolkit.probe.esc50 import esc50_data_dir, esc50_probe
from and_toolkit.records import ProbeClip


def test_data_dir_unset_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AND_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="AND_DATA_DIR is not set"):
        esc50_data_dir()


def test_data_dir_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AND_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"esc50.*does not exist.*AND_DATA_DIR"):
        esc50_data_dir()


def test_missing_dir_csv_and_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        esc50_probe(tmp_path / "esc50")
    with pytest.raises(DataError, match=r"esc50\.csv.*does not exist"):
        esc50_probe(tmp_path)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "esc50.csv").write_text("filename,fold,category\n1-1-A-0.wav,1,dog\n")
    with pytest.raises(DataError, match=r"missing column.*'target'"):
        esc50_probe(tmp_path)


@pytest.mark.esc50
@pytest.mark.skipif(
    not (os.environ.get("AND_DATA_DIR") and Path(os.environ["AND_DATA_DIR"], "esc50").is_dir()),
    reason="needs the ESC-50 data: export AND_DATA_DIR=<root containing esc50/>",
)
def test_real_esc50() -> None:
    df = esc50_probe(esc50_data_dir())
    ProbeClip.validate_frame(df, require_rows=True)
    assert df.height == 2000
    assert df["index"].to_list() == list(range(2000))
    assert df["label"].n_unique() == 50 and df["target"].n_unique() == 50
    assert sorted(df["fold"].unique().to_list()) == [1, 2, 3, 4, 5]
    assert (df.filter(df["fold"] == 1).height) == 400
    first = df.row(0, named=True)
    assert first["clip_id"] == "1-100032-A-0" and first["label"] == "dog"
    assert first["path"] == "audio/1-100032-A-0.flac"
    assert first["sample_rate"] == 16000 and first["n_samples"] == 80000
