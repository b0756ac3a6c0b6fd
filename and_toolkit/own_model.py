"""Dissect your own model: one call from a saved model and a folder of clips to a normal run.

:func:`dissect` builds a :class:`~and_toolkit.config.RunConfig` for a user's model
(``pretrained`` directory or ``module:function`` factory, see
:mod:`and_toolkit.targets.external`) and a folder probe, and runs probe -> targets -> record ->
extremes -> captions -> summaries -> calibrate -> open -> closed -> score (every description
scored on held-out clips). The paper's experiments and its report need targets trained here
(fold accuracy, pruning against a classifier trained on the probe's labels), so they are
skipped, with the reason in the manifest (``and-toolkit info`` shows it). :func:`layer_table`
lists what a model offers to record (``and-toolkit layers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from and_toolkit.cache import Cache
from and_toolkit.config import RunConfig, parse_config
from and_toolkit.errors import ConfigError
from and_toolkit.run import Run

__all__ = ["DISSECT_STAGES", "SKIPPED_REASON", "dissect", "dissect_config", "layer_table",
           "layer_table_text", "load_model_spec", "read_concepts"]

DISSECT_STAGES = ("probe", "targets", "record", "extremes", "captions", "summaries",
                  "calibrate", "open", "closed", "score")
"""The stages :func:`dissect` runs."""
SKIPPED_REASON = ("the paper's experiments (accuracy, pruning, unlearning, clustering) and its "
                  "report need targets trained here on the probe's labels (arch); a user's "
                  "model is dissected only")


def load_model_spec(spec: str, *, online: bool = False) -> Any:
    """An :class:`~and_toolkit.targets.external.ExternalModel` from ``DIR`` or
    ``package.module:function``."""
    from and_toolkit.targets.external import load_external, model_spec_kind

    if model_spec_kind(spec) == "factory":
        return load_external(factory=spec)
    return load_external(pretrained=spec, online=online)


def read_concepts(path: str | Path) -> list[str]:
    """Concepts from a text file, one per line (blank lines and ``#`` comments skipped).

    Raises:
        ConfigError: missing or unreadable file, or fewer than two concepts.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: concept file does not exist")
    try:
        lines = p.read_text("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not valid UTF-8 ({exc})") from None
    concepts = list(dict.fromkeys(s.strip() for s in lines
                                  if s.strip() and not s.strip().startswith("#")))
    if len(concepts) < 2:
        raise ConfigError(f"{p}: needs at least two concepts (one per line), got {len(concepts)}")
    return concepts


def _model_id(spec: str, kind: str) -> str:
    base = spec.rpartition(":")[2] if kind == "factory" else Path(spec).resolve().name
    return re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-") or "model"


def dissect_config(model: str, probe: str | Path, *, labels: str | Path | None = None,
                   captions: str | Path | None = None, concepts: str | Path | None = None,
                   captioner: str | None = None, name: str | None = None, online: bool = False,
                   include: list[str] | None = None, k: int | None = None,
                   drop_unlisted: bool = False,
                   overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run configuration of :func:`dissect` (arguments as there).

    Every path argument is checked here, before anything runs or is written.

    ``overrides``: more config, by section (``{"calibrate": {"encoder": "hashing"}}``), merged
    over what the arguments set.

    Raises:
        ConfigError: a path argument that does not exist (naming it), a model that cannot be
            found, or ``drop_unlisted`` without a labels CSV.
    """
    from and_toolkit.probe.folder_config import DEFAULT_LABELS_CSV
    from and_toolkit.targets.external import check_external, model_spec_kind

    kind = model_spec_kind(model)
    folder = Path(probe)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: probe folder does not exist")
    label_csv = Path(labels).resolve() if labels is not None else (
        folder / DEFAULT_LABELS_CSV if (folder / DEFAULT_LABELS_CSV).is_file() else None)
    if label_csv is not None and not label_csv.is_file():
        raise ConfigError(f"{label_csv}: label CSV does not exist")
    if drop_unlisted and label_csv is None:
        raise ConfigError("--drop-unlisted: drops the audio files a labels CSV does not list, "
                          f"but there is none (--labels, or {folder / DEFAULT_LABELS_CSV})")
    if captions is not None and not Path(captions).is_file():
        raise ConfigError(f"{captions}: caption file (--captions) does not exist")
    if captioner is not None and not Path(captioner).is_dir():
        raise ConfigError(f"{captioner}: captioner directory (--captioner) does not exist")
    target: dict[str, Any] = {"id": _model_id(model, kind)}
    target[kind] = str(Path(model).resolve()) if kind == "pretrained" and Path(
        model).exists() else model
    if kind == "pretrained":
        target["online"] = online
    check_external(**{kind: target[kind]}, online=online)  # before anything is written
    closed: dict[str, Any] = {}
    if concepts is not None:
        closed["concepts"] = read_concepts(concepts)
    elif label_csv is None:
        closed["concepts_from"] = "open"
    if captions is not None:
        cap = {"source": "file", "file": str(Path(captions).resolve()),
               "captioner_id": "imported", "descriptors": True}
    elif captioner is not None:
        cap = {"source": "captioner", "captioner_path": str(Path(captioner).resolve()),
               "captioner_id": "audio-lm", "descriptors": True}
    else:
        cap = {"source": "descriptors", "captioner_id": "descriptors-only",
               "descriptors": False}
    probe_section: dict[str, Any] = {
        "kind": "folder", "folder": str(folder.resolve()),
        "labels_csv": str(label_csv.resolve()) if label_csv else None}
    if drop_unlisted:
        probe_section["folder_options"] = {"unlisted": "drop"}
    record: dict[str, Any] = {"include": include} if include else {}
    if k is not None:
        record["k"] = k
    data: dict[str, Any] = {
        "name": name or f"dissect-{target['id']}", "stages": list(DISSECT_STAGES),
        "probe": probe_section, "targets": [target], "captions": cap, "closed": closed,
        "record": record,
    }
    for key, value in (overrides or {}).items():
        data[key] = {**data[key], **value} if isinstance(value, Mapping) and isinstance(
            data.get(key), dict) else value
    return parse_config(data, "and-toolkit dissect")


def dissect(model: str, probe: str | Path, *, labels: str | Path | None = None,
            captions: str | Path | None = None, concepts: str | Path | None = None,
            captioner: str | None = None, run_dir: str | Path | None = None,
            name: str | None = None, online: bool = False, include: list[str] | None = None,
            k: int | None = None, drop_unlisted: bool = False,
            overrides: Mapping[str, Any] | None = None, cache: Cache | None = None,
            force: bool = False, progress: bool = False) -> Run:
    """Dissect a user's model on a folder of clips; returns the run.

    Args:
        model: a transformers model directory (AST, wav2vec2, HuBERT, Whisper, CLAP) or
            ``package.module:function`` returning ``(torch.nn.Module, preprocess)``.
        probe: folder of audio clips (any rate / channel count: resampled and downmixed to the
            model's declared rate, recorded in provenance).
        labels: ``filename,label`` CSV (default: ``<probe>/labels.csv`` if present). Every
            audio file of the folder needs a row, unless ``drop_unlisted``.
        captions: ``filename,caption`` CSV.
        captioner: else, a local directory of a transformers audio LM that captions the clips;
            without either, the captions are our acoustic-descriptor sentences only (a warning
            in ``and-toolkit info``).
        concepts: text file, one concept per line (Module A's concept set); default: the label
            names, or without labels the open-set vocabulary (Module C's kept adjectives).
        run_dir: run directory (default ``runs/<name>``).
        name: run name (default ``dissect-<model id>``).
        online: allow a hub id / downloads for ``model``.
        include: fnmatch patterns of module paths to record (default: the family's selection).
        k: top-K / bottom-K clips per neuron (``record.k``; default: the config's; at most the
            number of clips).
        drop_unlisted: leave out the folder's audio files that the labels CSV does not list
            (reported in ``and-toolkit info``); default: they are an error.
        overrides: more config by section (see :func:`dissect_config`).
        cache: content-addressed cache (default ``$AND_CACHE_DIR``).
        force: recompute every stage. Without it, a second call on the same run directory
            re-runs only what changed: the arguments, or the files read (the model directory's
            or factory module's, the clips, the label / caption CSVs, the concepts; see
            :mod:`and_toolkit.pipeline.inputs`) and every stage after.
        progress: progress bars.
    """
    from and_toolkit.pipeline import run_pipeline

    cfg = dissect_config(model, probe, labels=labels, captions=captions, concepts=concepts,
                         captioner=captioner, name=name, online=online, include=include, k=k,
                         drop_unlisted=drop_unlisted, overrides=overrides)
    run = run_pipeline(cfg, run_dir=run_dir, cache=cache, force=force, progress=progress)
    run.update_manifest(skipped={"experiments": SKIPPED_REASON, "report": SKIPPED_REASON})
    return run


def layer_table(model: str, *, online: bool = False, include: list[str] | None = None,
                pooling: str = "mean") -> list[Any]:
    """The recordable modules of a model with output shapes and neuron counts (one forward
    pass on 1 s of seeded noise at the model's rate).

    Raises:
        ValueError: an ``include`` pattern matches no module (naming the closest paths).
    """
    from and_toolkit.recording.hooks import DEFAULT_EXCLUDE, select_layers
    from and_toolkit.recording.inspect import layer_rows
    from and_toolkit.targets.external import dummy_waveforms

    ext = load_model_spec(model, online=online)
    exclude = [*DEFAULT_EXCLUDE, *ext.exclude]
    chosen = set(select_layers(ext.module, include=include, types=ext.types, exclude=exclude))
    prepared = ext.prepare(dummy_waveforms(ext.sample_rate))
    rows = layer_rows(ext.module, prepared.inputs, ext.types, exclude, pooling)
    return [replace(r, default=r.path in chosen) for r in rows]


def layer_table_text(rows: list[Any]) -> str:
    """:func:`layer_table` as an aligned text table with a total line."""
    header = ["layer", "type", "output shape", "pooling", "neurons", "recorded"]
    body = [[r.path, r.kind, "x".join(map(str, r.shape)) if r.shape else "-", r.pooling,
             str(r.neurons if r.neurons is not None else "-"), "yes" if r.default else "no"]
            for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, ["-" * w for w in widths], *body]]
    total = sum(r.neurons or 0 for r in rows if r.default)
    n = sum(r.default for r in rows)
    lines.append(f"{n} layers recorded by default, {total} neurons")
    return "\n".join(lines) + "\n"
