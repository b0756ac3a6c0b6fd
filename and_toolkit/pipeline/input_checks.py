"""The run's own inputs: the files and directories its config names, checked before the run
directory is made (a refused run leaves nothing behind).

:func:`check_inputs` checks what the stages about to run will read: the probe folder, its labels
CSV (and that ``probe.folder_options``, which describe a CSV, have one), ESC-50 under
``$AND_DATA_DIR``, users' models (``pretrained`` directories, ``factory`` functions), the
caption file or captioner directory, CLAP's directory when one is set for TAB, the annotation
sheet. Each problem is a :class:`~and_toolkit.errors.ConfigError` naming the field and the path.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from and_toolkit.config import ProbeSection, RunConfig
from and_toolkit.errors import ConfigError

__all__ = ["check_inputs", "data_path", "labels_csv"]


def labels_csv(probe: ProbeSection) -> str | None:
    """The labels CSV of a folder probe (relative to the folder, or absolute), or None for an
    unlabelled folder (:func:`~and_toolkit.probe.folder.labels_csv_of`)."""
    from and_toolkit.probe.folder import labels_csv_of

    return labels_csv_of(probe.folder, probe.labels_csv, probe.folder_options) \
        if probe.folder else None


def data_path(name: str) -> Path:
    """A path of the config: absolute, or relative to ``$AND_DATA_DIR`` (DataError when it is
    not set)."""
    from and_toolkit.probe.esc50 import esc50_data_dir

    return Path(name) if Path(name).is_absolute() else esc50_data_dir().parent / name


def _exists(field: str, path: Path, what: str, *, directory: bool = False) -> None:
    if not (path.is_dir() if directory else path.is_file()):
        raise ConfigError(f"{field}: {path}: {what} does not exist")


def _check_probe(probe: ProbeSection) -> None:
    if probe.kind == "esc50":
        from and_toolkit.probe.esc50 import esc50_data_dir

        esc50_data_dir()  # DataError naming $AND_DATA_DIR / esc50
    if probe.kind != "folder":
        return
    if not probe.folder:
        raise ConfigError("probe.folder: required for kind 'folder'")
    _exists("probe.folder", Path(probe.folder), "probe folder", directory=True)
    csv = labels_csv(probe)
    if csv is not None:
        _exists("probe.labels_csv", Path(probe.folder) / csv, "label CSV")
    elif probe.folder_options:
        raise ConfigError(
            f"probe.folder_options: {sorted(probe.folder_options)} describe a labels CSV, but "
            f"{probe.folder} has none (probe.labels_csv is unset and there is no labels.csv): "
            "set probe.labels_csv, or drop the options (every audio file is then a clip, "
            "unlabelled)")


def check_inputs(cfg: RunConfig, stages: Collection[str]) -> None:
    """Refuse missing inputs of ``stages`` (the stages about to run) before anything is written.

    Raises:
        ConfigError: a path the config names does not exist, a required one is not set, or a
            user's model cannot be found (naming the field and the path).
        DataError: ``$AND_DATA_DIR`` is unset where a path is relative to it.
    """
    if "probe" in stages:
        _check_probe(cfg.probe)
    if {"targets", "record"} & set(stages):
        from and_toolkit.targets.external import check_external

        for t in cfg.targets:
            if t.external:
                check_external(pretrained=t.pretrained, factory=t.factory, online=t.online)
    cap = cfg.captions
    if "captions" in stages and cap.source == "file":
        if not cap.file:
            raise ConfigError("captions.file: required when captions.source = 'file'")
        _exists("captions.file", data_path(cap.file), "caption file")
    if "captions" in stages and cap.source == "captioner":
        if not cap.captioner_path:
            raise ConfigError("captions.captioner_path: required when captions.source = "
                              "'captioner'")
        _exists("captions.captioner_path", Path(cap.captioner_path), "captioner directory",
                directory=True)
    c = cfg.closed
    if cfg.uses_tab(stages) and c.tab_model == "clap" and c.clap_path:
        _exists("closed.clap_path", Path(c.clap_path), "CLAP directory", directory=True)
    if "experiments" in stages and cfg.experiments.annotations:
        _exists("experiments.annotations", Path(cfg.experiments.annotations), "annotation CSV")
