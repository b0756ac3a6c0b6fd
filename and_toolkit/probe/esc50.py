"""The ESC-50 probing set (2000 clips, 50 classes, 5 folds; fold 1 is the paper's test fold).

Expected layout under ``$AND_DATA_DIR/esc50``: ``meta/esc50.csv`` (columns filename, fold,
target, category, ...) and ``audio/<stem>.flac`` (16 kHz mono). The CSV names ``.wav`` files;
the audio is read from the ``.flac`` file with the same stem.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from and_toolkit.errors import DataError
from and_toolkit.probe.folder import FolderProbeConfig, folder_probe

__all__ = ["DATA_DIR_ENV", "ESC50_CONFIG", "esc50_data_dir", "esc50_probe"]

DATA_DIR_ENV = "AND_DATA_DIR"
"""Environment variable naming the data root (ESC-50 lives in ``$AND_DATA_DIR/esc50``)."""

ESC50_CONFIG = FolderProbeConfig(
    dataset="esc50",
    csv="meta/esc50.csv",
    audio_dir="audio",
    filename_col="filename",
    label_col="category",
    target_col="target",
    fold_col="fold",
    audio_ext=".flac",
)
"""CSV layout of ESC-50."""


def esc50_data_dir() -> Path:
    """The ESC-50 directory ``$AND_DATA_DIR/esc50``.

    Returns:
        Path of the existing ESC-50 directory.

    Raises:
        DataError: ``AND_DATA_DIR`` is unset or empty, or ``$AND_DATA_DIR/esc50`` does not exist.
    """
    root = os.environ.get(DATA_DIR_ENV, "").strip()
    if not root:
        raise DataError(
            f"{DATA_DIR_ENV} is not set: export {DATA_DIR_ENV}=<data root containing esc50/>"
        )
    path = Path(root) / "esc50"
    if not path.is_dir():
        raise DataError(f"{path}: ESC-50 directory does not exist ({DATA_DIR_ENV}={root})")
    return path


def esc50_probe(data_dir: str | Path) -> pl.DataFrame:
    """Build the ESC-50 ``ProbeClip`` frame (probe order = CSV order).

    Args:
        data_dir: the ESC-50 directory (e.g. :func:`esc50_data_dir`), holding ``meta/esc50.csv``
            and ``audio/``.

    Returns:
        ``ProbeClip`` frame: dataset 'esc50', clip_id = file stem, path 'audio/<stem>.flac',
        label = category, target, fold, sample_rate / n_samples from the file header.

    Raises:
        DataError: missing directory, CSV, columns or audio files, or unreadable audio.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: ESC-50 directory does not exist")
    return folder_probe(data_dir, ESC50_CONFIG)
