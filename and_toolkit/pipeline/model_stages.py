"""Stages around the target networks: train (or reuse), record activations, extremes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.cache import cache_key
from and_toolkit.config import TargetSection
from and_toolkit.errors import DataError
from and_toolkit.pipeline.clip_inputs import ClipInputs, ExternalInputs
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.engine import RecordJob
from and_toolkit.pipeline.targets import (
    batch_size_of,
    external_audio,
    external_layers,
    inputs_of,
    load_target,
    recorded_layers,
)
from and_toolkit.pipeline.training_plan import announce, plan_trainings, train_in_workers
from and_toolkit.records.models import Extremes, TrainingCurve
from and_toolkit.resources import measured
from and_toolkit.run import Run
from and_toolkit.targets.early_stop import final_row


def stage_targets(ctx: Context) -> dict[str, Any]:
    """Train (or reuse) every target; write ``training.parquet``; report fold accuracy."""
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    plan = plan_trainings(ctx)
    announce(plan)
    estimates = {p.target.id: p.estimate_s for p in plan if not p.cached}
    in_workers = train_in_workers(ctx, plan)
    for target in ctx.cfg.targets:
        if target.external:
            with measured() as usage:
                provenance[target.id] = _external_provenance(ctx, target)
            info[target.id] = {**provenance[target.id], "resources": usage.as_dict()}
            continue
        with measured() as usage:
            loaded = load_target(ctx, target, fresh=True)
        curve = loaded.curve
        rows += [{"model": target.id, "epoch": int(c["epoch"]), "train_loss": float(
            c["train_loss"]), "test_accuracy": float(c["test_accuracy"]),
            "seconds": float(c["seconds"])} for c in curve]
        record = {
            "arch": target.arch, "weights_key": loaded.weights_key,
            "test_accuracy": final_row(curve)["test_accuracy"] if curve else None,
            "train_seconds": round(sum(c["seconds"] for c in curve), 1),
            "test_fold": loaded.train_config.test_fold,
            "precision": loaded.train_config.precision,
        }
        if loaded.train_config.takes_waveforms:  # pinned sha256 of the packaged weights
            record["backbone_sha256"] = loaded.train_config.arch_payload()["backbone_sha256"]
        if loaded.train_config.yamnet_tuned_blocks is not None:  # fine-tuned: top blocks only
            record["yamnet_tuned_blocks"] = loaded.train_config.yamnet_tuned_blocks
        if loaded.train_config.patience is not None and curve:  # early stopping's choice
            record["early_stopping"] = {
                "patience": loaded.train_config.patience,
                "val_fraction": loaded.train_config.val_fraction,
                "max_epochs": loaded.train_config.epochs, "epochs_run": len(curve),
                "kept_epoch": int(final_row(curve)["epoch"]),
                "val_accuracy": [c["val_accuracy"] for c in curve]}
        provenance[target.id] = record
        # the thread count and the measurements behind the choices may differ from process to
        # process (they never change the weights key): manifest only, not the records.
        # "threads" is the training's (stored beside cached weights; None if cached before it
        # was), "training_choice" this run's
        made = loaded.trained_with or {}
        info[target.id] = {**record, "threads": made.get("threads"),
                           "trained_with": loaded.trained_with,
                           "training_choice": loaded.training_choice,
                           "resources": usage.as_dict(),
                           **in_workers.get(target.id, {"trained_here": loaded.trained_now})}
        estimate = estimates.get(target.id)
        if info[target.id]["trained_here"] and estimate is not None:
            info[target.id]["estimated_train_s"] = round(estimate, 2)
    ctx.run.write(TrainingCurve, TrainingCurve.frame(rows), targets=provenance)
    return info


def _external_provenance(ctx: Context, target: TargetSection) -> dict[str, Any]:
    """What identifies a user's model: its source, class, family, declared rate and the
    sha256 of its weights (nothing is trained)."""
    from and_toolkit.targets.external import weights_sha256

    ext = ctx.external_model(target)
    return {**ext.source, "sample_rate": ext.sample_rate, "trained_here": False,
            "weights_sha256": weights_sha256(ext.module)}


def clip_inputs(ctx: Context, cfg: Any) -> ClipInputs:
    """The record workers' feed for a target trained here (``TrainConfig`` ``cfg``): the
    inputs of ``inputs_of`` made per clip range (log-mel, or 16 kHz waveforms padded to the
    probe's longest clip, with the Whisper target's valid frames). Log-mel features already in
    the content cache are read from it row range by row range (verified here once, streamed).

    Raises:
        DataError: a rate the front end refuses (``probe.resample`` off); a waveform target
            on a probe not at 16 kHz.
    """
    ctx.rate_plan()  # refuses other rates before any worker starts, as Context.waveforms does
    audio = ctx.clip_audio(ctx.sample_rate(), resample_synthetic=False)
    if not cfg.takes_waveforms:
        cached = ctx.cache.verified_path("features", ctx.features_key())
        return ClipInputs(audio, "logmel", features=ctx.feature_config(),
                          cached=None if cached is None else str(cached))
    if set(audio.clip_rates) != {16000}:
        raise DataError(f"{ctx.run.root / 'probe.parquet'}: field 'sample_rate': pretrained "
                        f"targets need 16 kHz clips, got {sorted(set(audio.clip_rates))} Hz")
    lengths = tuple(int(n) for n in ctx.probe()["n_samples"])
    window = cfg.whisper_window_seconds if cfg.arch == "whisper-frozen" else None
    return ClipInputs(audio, "waveform", width=max(lengths), lengths=lengths,
                      whisper_window=window)


def _record_external(ctx: Context, target: TargetSection) -> dict[str, Any]:
    """Record a user's model: clips streamed from disk at its rate, batches prepared by its
    family adapter, padded frames left out of every pooled value. Under an engine whose workers
    load clips (Ray), its actors hold the model and load their own partitions, unless the
    model's batches end where the clip length changes (``exact_padding = False``): such a
    model is recorded in this process (stage info ``engine: local``)."""
    from and_toolkit.recording.record import record_to_run
    from and_toolkit.targets.external import batches_of

    ext = ctx.external_model(target)
    layers = external_layers(ctx, target)
    clips, plan = external_audio(ctx, target)
    n = ctx.probe().height
    batch_size = ext.batch_size(ctx.cfg.record.batch_size)
    provenance = {"model": ext.source, "audio": plan}
    info: dict[str, Any] = {"layers": list(layers), "audio": plan}
    engine = ctx.engine()
    with measured() as usage:
        if engine.loads_clips and ext.exact_padding:
            from and_toolkit.targets.external import weights_sha256

            feed = ExternalInputs(
                target.pretrained, target.factory, target.online, weights_sha256(ext.module),
                ctx.clip_audio(ext.sample_rate, resample_synthetic=True))
            engine.record(RecordJob(
                model=ext.module, inputs=None, clips=feed,
                batch_size=batch_size, layers=layers, pooling=ctx.cfg.record.pooling,
                run=ctx.run, model_id=target.id, probe_sha256=ctx.probe_sha(),
                provenance=provenance, progress=ctx.progress))
        else:
            prepared = batches_of(ext, clips, batch_size)
            record_to_run(
                ext.module, ((p.inputs, p.frames) for p in prepared), layers,
                ctx.cfg.record.pooling, ctx.run, target.id, ctx.probe_sha(), n_clips=n,
                progress=ctx.progress, provenance=provenance,
            )
            if engine.name != "local":
                info["engine"] = "local"
    return {**info, "resources": usage.as_dict()}


def _whisper_frames(ctx: Context, cfg: Any) -> dict[int, np.ndarray] | None:
    """Valid frames of every probe clip for the Whisper target (the clips' own lengths, not the
    zero-padded window: ``{T: int [N]}``); None for other targets (every frame counts)."""
    if cfg.arch != "whisper-frozen":
        return None
    from and_toolkit.targets.pretrained.whisper import valid_frames

    lengths = np.array([len(w) for w in ctx.waveforms()])
    return valid_frames(lengths, cfg.whisper_window_seconds)


RECORD_VERSION = "pooled-v1"
"""Part of :func:`record_key`: bump it when recording a layer changes its values."""


def record_key(ctx: Context, weights_key: str, layers: list[str]) -> str:
    """What one target's activation files are a function of: its weights, the probe clips and
    their data, the recorded layers and the pooling (and :data:`RECORD_VERSION`)."""
    return cache_key(kind="record", version=RECORD_VERSION, weights=weights_key,
                     probe=ctx.probe_sha(), data=ctx.data_sha(), layers=list(layers),
                     pooling=json.dumps(ctx.cfg.record.pooling))


def _recorded(run: Run, model: str, layers: list[str], key: str) -> bool:
    """True when every layer of ``model`` has an activation file written under ``key`` and no
    other layer has one (then the record stage keeps them instead of recording again)."""
    expected = {run.activation_path(model, layer) for layer in layers}
    return set(run.activation_files(model)) == expected and all(
        (run.activation_provenance(model, layer) or {}).get("record_key") == key
        for layer in layers)


ACTIVATIONS_NAMESPACE = "activations"
"""Cache namespace of recorded activation files (one entry per record key and layer)."""


def _layer_key(key: str, layer: str) -> str:
    return cache_key(kind="activation-file", record=key, layer=layer)


def _from_cache(ctx: Context, model: str, layers: list[str], key: str) -> bool:
    """Write ``model``'s activation files from the cache when every layer is there under
    ``key`` (a new run directory of the same targets and probe records nothing); else False
    and nothing is written."""
    blobs = []
    for layer in layers:
        data = ctx.cache.get_bytes(ACTIVATIONS_NAMESPACE, _layer_key(key, layer))
        if data is None:
            return False
        blobs.append(data)
    for layer, data in zip(layers, blobs, strict=True):
        atomic_write_bytes(ctx.run.activation_path(model, layer),
                           lambda tmp, d=data: tmp.write_bytes(d))  # type: ignore[misc]
    return True


def _to_cache(ctx: Context, model: str, layers: list[str], key: str) -> None:
    """Store ``model``'s freshly recorded activation files in the cache under ``key``."""
    for layer in layers:
        ctx.cache.put_bytes(ACTIVATIONS_NAMESPACE, _layer_key(key, layer),
                            ctx.run.activation_path(model, layer).read_bytes())


def stage_record(ctx: Context) -> dict[str, Any]:
    """Record every chosen layer of every target over the whole probe set (through the run's
    engine: this process, or an actor pool on a Ray cluster whose actors load, resample and
    featurize their own clips; same files either way). A user's model (``external``) is
    recorded from clips streamed from disk through its family adapter (:func:`_record_external`).

    A target whose activation files were all written under the same :func:`record_key` (same
    weights, probe, layers and pooling) keeps them: adding a target to a run records only the
    new one. Activation files of targets or layers the config no longer records are removed
    once every target is recorded (``_removed`` in the stage info), so later stages never
    read them.

    Recorded files are also stored in the cache under the record key and layer, so another run
    directory with the same target and probe copies them instead of recording (``from_cache``:
    the key's prefix; ``resources`` then measure the copy).

    Stage info per target: ``layers`` (module paths in module order, the classifier last; read
    back by :meth:`~and_toolkit.run.Run.recorded_layers`); ``reused`` (the key's prefix) when
    the files were kept.
    """
    engine = ctx.engine()
    info: dict[str, Any] = {"_execution": engine.describe("record")}  # "_": never a target id
    try:
        for target in ctx.cfg.targets:
            if target.external:
                info[target.id] = _record_external(ctx, target)
                continue
            loaded = load_target(ctx, target)
            layers = recorded_layers(ctx, loaded)
            cfg = loaded.train_config
            key = record_key(ctx, loaded.weights_key, layers)
            if _recorded(ctx.run, target.id, layers, key):
                info[target.id] = {"layers": list(layers), "reused": key[:16]}
                continue
            with measured() as usage:
                copied = _from_cache(ctx, target.id, layers, key)
            if copied:
                info[target.id] = {"layers": list(layers), "from_cache": key[:16],
                                   "resources": usage.as_dict()}
                continue
            common: dict[str, Any] = dict(
                model=loaded.model, batch_size=batch_size_of(cfg, ctx.cfg.record.batch_size),
                layers=layers, pooling=ctx.cfg.record.pooling, run=ctx.run, model_id=target.id,
                probe_sha256=ctx.probe_sha(),
                provenance={"weights_key": loaded.weights_key, "record_key": key},
                progress=ctx.progress)
            if engine.loads_clips:  # the workers load and featurize their own clips
                job = RecordJob(inputs=None, clips=clip_inputs(ctx, cfg), **common)
            else:
                job = RecordJob(inputs=inputs_of(ctx, cfg), frames=_whisper_frames(ctx, cfg),
                                **common)
            with measured() as usage:
                engine.record(job)
            _to_cache(ctx, target.id, layers, key)
            info[target.id] = {"layers": list(layers), "resources": usage.as_dict()}
    finally:
        engine.release()
    stale = _remove_stale_activations(ctx.run, {t.id: info[t.id]["layers"]
                                                for t in ctx.cfg.targets})
    if stale:
        info["_removed"] = stale
    return info


def _remove_stale_activations(run: Run, layers: dict[str, list[str]]) -> list[str]:
    """Delete the activation files of ``run`` that are not one of ``layers`` (``{target id:
    recorded layers}``), with their emptied folders; returns the removed paths (relative)."""
    keep = {run.activation_path(m, layer) for m, ls in layers.items() for layer in ls}
    removed = []
    for path in run.activation_files():
        if path not in keep:
            path.unlink()
            removed.append(str(path.relative_to(run.root)))
            for folder in (path.parent, path.parent.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
    return removed


def layer_extremes(shared: tuple[Run, list[str], int], item: tuple[str, str]) -> pl.DataFrame:
    """Extremes rows of one activation layer (an engine work item).

    Args:
        shared: (run, clip ids in probe order, K).
        item: (model, layer).
    """
    from and_toolkit.recording.extremes import extremes

    run, clip_ids, k = shared
    return extremes(run.activations(*item), clip_ids, k)


def _extremes_frame(ctx: Context, k: int) -> pl.DataFrame:
    clip_ids = ctx.probe()["clip_id"].to_list()
    frames = ctx.engine().map("extremes", layer_extremes, ctx.run.activation_layers(),
                              (ctx.run, clip_ids, k))
    return pl.concat(frames) if frames else Extremes.empty()


def stage_extremes(ctx: Context) -> dict[str, Any]:
    """Top-K / bottom-K clips per neuron (and the extra K of Figs 11-13). Files of an extra K
    the config no longer lists are removed once the new files are written (``removed`` in the
    stage info), so no reader finds them."""
    k = ctx.cfg.record.k
    # the probe stage refused it already; here for a K changed after the probe was made
    ctx.cfg.record.check_clips(ctx.probe().height, str(ctx.run.root / "probe.parquet"))
    df = _extremes_frame(ctx, k)
    ctx.run.write_extremes(df, None, {"k": k})
    for extra in ctx.cfg.record.extra_k:
        ctx.run.write_extremes(_extremes_frame(ctx, extra), extra, {"k": extra})
    info = {"neurons": df.height // 2, "k": k, "extra_k": ctx.cfg.record.extra_k,
            "key": cache_key(k=k)[:8], "pooling": json.dumps(ctx.cfg.record.pooling),
            "_execution": ctx.engine().describe("extremes")}
    stale = [e for e in ctx.run.extremes_ks() if e not in ctx.cfg.record.extra_k]
    for extra in stale:
        ctx.run.extremes_path(extra).unlink()
    if stale:
        info["removed"] = [ctx.run.extremes_path(e).name for e in stale]
    return info
