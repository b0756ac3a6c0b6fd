"""Generic probing-set loader: a folder of audio files plus a CSV of labels.

The CSV has one row per clip; column names are configurable. Clips are kept in CSV order (that
order is the probe order, i.e. the row of each clip in activation vectors). Audio headers are
read to fill ``sample_rate`` / ``n_samples``; the audio itself is loaded later with
:func:`and_toolkit.probe.audio.load_clips`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl

from and_toolkit.errors import DataError
from and_toolkit.probe.audio import audio_info
from and_toolkit.probe.folder_config import DEFAULT_LABELS_CSV, FolderProbeConfig
from and_toolkit.records import ProbeClip

__all__ = ["AUDIO_EXTENSIONS", "DEFAULT_LABELS_CSV", "UNLABELLED", "FolderProbeConfig",
           "folder_probe", "labels_csv_of", "unlabelled_probe", "unlisted_files"]

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".au",
                                     ".opus")
"""File extensions an unlabelled folder is scanned for (case-insensitive)."""
UNLABELLED = "unlabelled"
"""The label of every clip of a folder without a label CSV."""


def _read_csv(path: Path, required: list[str]) -> pl.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: label CSV does not exist")
    try:
        df = pl.read_csv(path, infer_schema=False)
    except Exception as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {df.columns}")
    if df.height == 0:
        raise DataError(f"{path}: has no rows")
    for col in required:
        nulls = df[col].is_null() | (df[col].str.strip_chars() == "")
        if nulls.any():
            rows = nulls.arg_true().head(5).to_list()
            raise DataError(f"{path}: column {col!r} is empty in row(s) {rows}")
    return df


def _int_column(df: pl.DataFrame, col: str, path: Path) -> list[int]:
    ints = df[col].str.strip_chars().cast(pl.Int64, strict=False)
    bad = ints.is_null()
    if bad.any():
        rows = bad.arg_true().head(5).to_list()
        raise DataError(f"{path}: column {col!r} is not an integer in row(s) {rows}")
    if (ints < 0).any():
        raise DataError(f"{path}: column {col!r} has negative values")
    return [int(v) for v in ints.to_list()]


def labels_csv_of(folder: str | Path, labels_csv: str | None,
                  options: Mapping[str, Any]) -> str | None:
    """The label CSV of a folder probe, relative to ``folder`` (or absolute), or None for an
    unlabelled folder: ``options["csv"]`` (``FolderProbeConfig`` fields) over ``labels_csv``;
    without ``labels_csv``, :data:`DEFAULT_LABELS_CSV` if the folder holds it, else None (the
    folder is then unlabelled and ``options`` are not used)."""
    csv = labels_csv or (DEFAULT_LABELS_CSV if (Path(folder) / DEFAULT_LABELS_CSV).is_file()
                         else None)
    return None if csv is None else str(options.get("csv", csv))


def folder_probe(root: str | Path, cfg: FolderProbeConfig) -> pl.DataFrame:
    """Build the ``ProbeClip`` frame of a folder probing set.

    Args:
        root: dataset root directory (``ProbeClip.path`` is relative to it).
        cfg: CSV layout.

    Returns:
        ``ProbeClip`` frame, one row per CSV row, ``index`` = CSV row order (0-based).

    Raises:
        DataError: missing root / CSV / columns / audio files, non-integer targets or folds,
            duplicate clip ids (file stems), an unreadable audio file (named), or, with
            ``cfg.unlisted = "error"``, audio files the CSV does not list (how many, a few
            named).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset directory does not exist")
    csv_path = root / cfg.csv
    cols = [cfg.filename_col, cfg.label_col]
    cols += [c for c in (cfg.target_col, cfg.fold_col) if c is not None]
    df = _read_csv(csv_path, cols)

    labels = [str(v).strip() for v in df[cfg.label_col].to_list()]
    if cfg.target_col is not None:
        targets = _int_column(df, cfg.target_col, csv_path)
    else:
        ids = {lab: i for i, lab in enumerate(sorted(set(labels)))}
        targets = [ids[lab] for lab in labels]
    folds = _int_column(df, cfg.fold_col, csv_path) if cfg.fold_col else [1] * df.height

    rows = []
    seen: dict[str, int] = {}
    for i, (name, label, target, fold) in enumerate(
        zip(df[cfg.filename_col].to_list(), labels, targets, folds, strict=True)
    ):
        rel = PurePosixPath(cfg.audio_dir, str(name).strip())
        if rel.is_absolute() or ".." in rel.parts:
            raise DataError(
                f"{csv_path}: row {i}: file name {name!r} must be a path inside the dataset"
            )
        if cfg.audio_ext is not None:
            rel = rel.with_suffix(cfg.audio_ext)
        clip_id = rel.stem
        if clip_id in seen:
            raise DataError(
                f"{csv_path}: clip id {clip_id!r} appears in rows {seen[clip_id]} and {i}"
            )
        seen[clip_id] = i
        sr, n, _channels = audio_info(root / rel)
        rows.append({
            "dataset": cfg.dataset, "clip_id": clip_id, "index": i, "path": str(rel),
            "label": label, "target": target, "fold": fold, "sample_rate": sr, "n_samples": n,
        })
    frame = ProbeClip.validate_frame(ProbeClip.frame(rows), str(csv_path))
    if cfg.unlisted == "error":
        unlisted = unlisted_files(root, cfg, frame["path"].to_list())
        if unlisted:
            raise DataError(
                f"{csv_path}: {len(unlisted)} audio file(s) under {root / cfg.audio_dir} have no "
                f"row ({_some(unlisted)}); the CSV lists {frame.height}. Add a row for each, or "
                "leave them out: unlisted = 'drop' (probe.folder_options.unlisted; "
                "and-toolkit dissect --drop-unlisted)")
    return frame


def _some(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def unlisted_files(root: str | Path, cfg: FolderProbeConfig, listed: list[str]) -> list[str]:
    """Audio files (:data:`AUDIO_EXTENSIONS`) under ``root / cfg.audio_dir``, recursively, that
    are not among ``listed`` (``ProbeClip.path`` values: relative to ``root``); sorted."""
    root = Path(root)
    folder = root / cfg.audio_dir
    if not folder.is_dir():
        return []
    known = set(listed)
    return sorted(rel for rel in (p.relative_to(root).as_posix() for p in folder.rglob("*")
                                  if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
                  if rel not in known)


def unlabelled_probe(root: str | Path, dataset: str) -> pl.DataFrame:
    """The ``ProbeClip`` frame of every audio file under ``root`` (no label CSV).

    Files are found recursively by extension (:data:`AUDIO_EXTENSIONS`), in sorted path order
    (the probe order); other files are ignored. Every clip gets label :data:`UNLABELLED`,
    target 0 and fold 1.

    Raises:
        DataError: missing root, no audio file, an unreadable or empty audio file, or two
            files with the same stem (clip id), each naming the file(s).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: probe folder does not exist")
    files = sorted(p for p in root.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise DataError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in the folder "
                        "or its subfolders")
    rows = []
    seen: dict[str, Path] = {}
    for i, path in enumerate(files):
        if path.stem in seen:
            raise DataError(f"{path}: clip id {path.stem!r} is also the stem of {seen[path.stem]}"
                            "; rename one (clip ids are file stems)")
        seen[path.stem] = path
        sr, n, _channels = audio_info(path)
        rows.append({"dataset": dataset, "clip_id": path.stem, "index": i,
                     "path": path.relative_to(root).as_posix(), "label": UNLABELLED,
                     "target": 0, "fold": 1, "sample_rate": sr, "n_samples": n})
    return ProbeClip.validate_frame(ProbeClip.frame(rows), str(root))
