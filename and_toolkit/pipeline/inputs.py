"""Stamps of the external inputs a run reads, so that a changed input re-runs its stage.

A stage's fingerprint (:func:`and_toolkit.pipeline.fingerprints`) covers its config section and
a stamp of every input it is the first stage to read from a user's path
(:func:`input_stamps`, computed once per :func:`~and_toolkit.pipeline.run_pipeline` call):

- a folder (probe clips, a model, captioner, LLM or CLAP directory): the relative path, size
  and modification time in ns of each file (the probe folder: its audio files,
  :data:`~and_toolkit.probe.folder.AUDIO_EXTENSIONS`). Nothing is read, so a folder of GB of
  weights or thousands of clips is stamped in milliseconds; a file rewritten with the same
  size within the file system's timestamp resolution, or a folder copied without keeping
  modification times, is seen as unchanged / changed accordingly.
- a small file read whole (label, caption and annotation CSVs, a factory's module source):
  the sha256 of its bytes, so touching it re-runs nothing and a copy keeps its stamp.

Not stamped: the ESC-50 probe (``probe.kind = "esc50"``) and a ``captions.file`` given
relative to ``$AND_DATA_DIR``: the data root holds published, read-only datasets and the
captions shipped with them (``and-toolkit run --force`` re-runs a stage regardless); hub ids
(``online = true``) and the packaged backends (``smollm2``), which are pinned elsewhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from and_toolkit.cache import sha256_file
from and_toolkit.config import RunConfig
from and_toolkit.probe.folder import AUDIO_EXTENSIONS, DEFAULT_LABELS_CSV, labels_csv_of

__all__ = ["MISSING", "InputStamp", "input_changes", "input_stamps", "stamp_file",
           "stamp_folder"]

MISSING = "missing"
"""The digest of an input whose path does not exist (or whose factory module is not found)."""
PACKAGED_LLM = "smollm2"
"""The packaged LLM backend id (weights pinned in the package, not a user's path)."""


@dataclass(frozen=True)
class InputStamp:
    """One external input of a stage.

    Attributes:
        key: the config field naming it, e.g. ``probe.folder``, ``targets[m].pretrained``.
        path: its absolute path (a factory: its module's source file, or the module name).
        kind: ``files`` (a folder, or a file stamped by size and modification time) or
            ``content`` (a file stamped by the sha256 of its bytes).
        files: files stamped (0 when missing).
        digest: 16 hex characters of the sha256 of the listing or of the bytes; :data:`MISSING`
            when the path does not exist.
    """

    key: str
    path: str
    kind: Literal["files", "content"]
    files: int
    digest: str

    def as_dict(self) -> dict[str, Any]:
        """The manifest's record of the stamp (``stages.<stage>.inputs.<key>``)."""
        out = asdict(self)
        del out["key"]
        return out


def stamp_folder(key: str, path: str | Path, *, suffixes: Sequence[str] | None = None,
                 exclude: Path | None = None) -> InputStamp:
    """Stamp of a folder (or one file) by the relative path, size and mtime in ns of each file.

    Args:
        key: the config field naming the folder.
        path: the folder.
        suffixes: stamp only files with these extensions (lower case, with the dot); None:
            every file, names starting with '.' (and folders so named) left out.
        exclude: a folder inside ``path`` left out (the run directory itself).
    """
    root = Path(path).expanduser().resolve()
    if not root.exists():
        return InputStamp(key, str(root), "files", 0, MISSING)
    if root.is_file():
        files, base = [root], root.parent
    else:
        skip = exclude.resolve() if exclude is not None else None
        files, base = [], root
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root)
            if (suffixes is None and any(part.startswith(".") for part in rel.parts)) or (
                    suffixes is not None and f.suffix.lower() not in suffixes) or (
                    skip is not None and (f == skip or skip in f.parents)) or not f.is_file():
                continue
            files.append(f)
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return InputStamp(key, str(root), "files", len(files), h.hexdigest()[:16])


def stamp_file(key: str, path: str | Path) -> InputStamp:
    """Stamp of a small file read whole, by the sha256 of its bytes."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        return InputStamp(key, str(p), "content", 0, MISSING)
    return InputStamp(key, str(p), "content", 1, sha256_file(p)[:16])


def _factory_source(key: str, spec: str) -> InputStamp:
    """Stamp of a factory's module source file (``pkg.mod`` of ``pkg.mod:function``), found as
    the import system finds it (``importlib.util.find_spec``: parent packages are imported, the
    module itself is not). Only that file is stamped, not modules it imports or files it reads.
    """
    name = spec.partition(":")[0]
    try:
        found = importlib.util.find_spec(name)
    except Exception:  # a parent package that fails to import: the targets stage says why
        found = None
    origin = getattr(found, "origin", None)
    if not origin or not Path(origin).is_file():
        return InputStamp(key, name, "content", 0, MISSING)
    return stamp_file(key, origin)


def _local_model(name: str) -> Path | None:
    """The local directory / file of an LLM backend name, None for the packaged backend or a
    hub id (``vllm:<dir>`` names a directory too)."""
    if name == PACKAGED_LLM:
        return None
    local = Path(name.removeprefix("vllm:")).expanduser()
    return local if local.exists() else None


def input_stamps(cfg: RunConfig, exclude: Path | None = None) -> dict[str, list[InputStamp]]:
    """Stamps of the external inputs of ``cfg``, by the first stage that reads each one.

    probe: ``probe.folder`` (audio files) and its label CSV (``probe.labels_csv``, or the
    folder's ``labels.csv``, stamped as missing while there is none); targets: each
    ``pretrained`` directory and ``factory`` module; captions: ``captions.file`` (absolute) or
    ``captions.captioner_path``; summaries / open / closed: an LLM given as a local directory,
    ``closed.clap_path``; experiments: ``experiments.annotations``. Inputs a stage does not use
    under ``cfg`` (an LLM of a summariser not selected) are not stamped.

    Args:
        cfg: the run configuration.
        exclude: the run directory, left out of every folder stamp.
    """
    out: dict[str, list[InputStamp]] = {}

    def add(stage: str, stamp: InputStamp) -> None:
        out.setdefault(stage, []).append(stamp)

    probe = cfg.probe
    if probe.kind == "folder" and probe.folder:
        add("probe", stamp_folder("probe.folder", probe.folder, suffixes=AUDIO_EXTENSIONS,
                                  exclude=exclude))
        csv = labels_csv_of(probe.folder, probe.labels_csv, probe.folder_options)
        add("probe", stamp_file("probe.labels_csv",
                                Path(probe.folder) / (csv or DEFAULT_LABELS_CSV)))
    for t in cfg.targets:
        if t.pretrained is not None and (not t.online or Path(t.pretrained).expanduser()
                                         .exists()):
            add("targets", stamp_folder(f"targets[{t.id}].pretrained", t.pretrained,
                                        exclude=exclude))
        elif t.factory is not None:
            add("targets", _factory_source(f"targets[{t.id}].factory", t.factory))
    caps = cfg.captions
    if caps.source == "file" and caps.file and Path(caps.file).is_absolute():
        add("captions", stamp_file("captions.file", caps.file))
    if caps.source == "captioner" and caps.captioner_path:
        add("captions", stamp_folder("captions.captioner_path", caps.captioner_path,
                                     exclude=exclude))
    llms = [("summaries", "summaries.llm", cfg.summaries.llm, cfg.summaries.summarizer == "llm"),
            ("open", "open.llm", cfg.open.llm, cfg.open.adjective_filter == "llm"),
            ("closed", "closed.icl_llm", cfg.closed.icl_llm, "ICL" in cfg.closed.methods)]
    for stage, key, name, used in llms:
        if used and (local := _local_model(name)) is not None:
            add(stage, stamp_folder(key, local, exclude=exclude))
    closed = cfg.closed
    if "TAB" in closed.methods and closed.tab_model == "clap" and closed.clap_path:
        add("closed", stamp_folder("closed.clap_path", closed.clap_path, exclude=exclude))
    if cfg.experiments.annotations:
        add("experiments", stamp_file("experiments.annotations", cfg.experiments.annotations))
    return out


def input_changes(recorded: Mapping[str, Any] | None, stamps: Sequence[InputStamp]
                  ) -> list[str]:
    """What differs between a stage's recorded inputs (manifest ``stages.<stage>.inputs``) and
    ``stamps``, one phrase per input (empty: the same inputs)."""
    old = dict(recorded or {})
    out = []
    for s in stamps:
        was = old.pop(s.key, None)
        if was == s.as_dict():
            continue
        if not isinstance(was, dict):
            out.append(f"{s.key} {s.path}: not stamped before")
        elif was.get("path") != s.path:
            out.append(f"{s.key}: {was.get('path')} -> {s.path}")
        elif s.digest == MISSING:
            out.append(f"{s.key} {s.path}: missing")
        elif was.get("digest") == MISSING:
            out.append(f"{s.key} {s.path}: now present")
        elif s.kind == "content":
            out.append(f"{s.key} {s.path}: contents changed")
        elif s.files != was.get("files"):
            n = s.files - int(was.get("files") or 0)
            out.append(f"{s.key}: {abs(n)} file(s) {'added' if n > 0 else 'removed'} under "
                       f"{s.path} ({was.get('files')} -> {s.files})")
        else:
            out.append(f"{s.key}: files changed under {s.path} (size or modification time)")
    out += [f"{key}: no longer read" for key in old]
    return out
