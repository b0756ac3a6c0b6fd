"""How a folder probing set's label CSV is laid out (no torch, no audio I/O: the run
configuration validates ``probe.folder_options`` against it when it is loaded). The loader is
:func:`~and_toolkit.probe.folder.folder_probe`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_LABELS_CSV", "FolderProbeConfig"]

DEFAULT_LABELS_CSV = "labels.csv"
"""The label CSV a folder probe reads when none is configured, if the folder holds it."""


class FolderProbeConfig(BaseModel):
    """Where the labels and audio of a folder probing set are, and how the CSV is laid out.

    Attributes:
        dataset: probing-set id stored in every ``ProbeClip`` row.
        csv: CSV path relative to the dataset root.
        audio_dir: folder of the audio files relative to the dataset root ('' = the root).
        filename_col: column holding each clip's file name (relative to ``audio_dir``).
        label_col: column holding the class name.
        target_col: column holding the integer class id; None numbers the sorted distinct
            labels 0, 1, ...
        fold_col: column holding the 1-based fold; None puts every clip in fold 1.
        audio_ext: if set (e.g. '.flac'), replaces the extension of every file name (ESC-50's CSV
            names '.wav' files that are shipped as '.flac').
        unlisted: audio files under ``audio_dir`` that no CSV row names: ``"error"`` (default:
            refused, naming how many and a few of them) or ``"drop"`` (left out of the probe;
            the probe stage reports them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: str = Field(min_length=1)
    csv: str = DEFAULT_LABELS_CSV
    audio_dir: str = ""
    filename_col: str = "filename"
    label_col: str = "label"
    target_col: str | None = None
    fold_col: str | None = None
    audio_ext: str | None = None
    unlisted: Literal["error", "drop"] = "error"
