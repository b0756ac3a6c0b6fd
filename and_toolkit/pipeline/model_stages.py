"""Stages around the target networks: train (or reuse), record activations, extremes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.cache import cache_key
from and_toolkit.config import TargetSection
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
from and_toolkit.records.models import Extremes, TrainingCurve
from and_toolkit.resources import measured
from and_toolkit.run import Run


def stage_targets(ctx: Context) -> dict[str, Any]:
    """Train (or reuse) every target; write ``training.parquet``; report fold accuracy."""
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
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
            "test_accuracy": curve[-1]["test_accuracy"] if curve else None,
            "train_seconds": round(sum(c["seconds"] for c in curve), 1),
            "test_fold": loaded.train_config.test_fold,
            "precision": loaded.train_config.precision,
        }
        if loaded.train_config.takes_waveforms:  # pinned sha256 of the packaged weights
            record["backbone_sha256"] = loaded.train_config.arch_payload()["backbone_sha256"]
        if loaded.train_config.yamnet_tuned_blocks is not None:  # fine-tuned: top blocks only
            record["yamnet_tuned_blocks"] = loaded.train_config.yamnet_tuned_blocks
        provenance[target.id] = record
        # the thread count and the measurements behind the choices may differ from process to
        # process (they never change the weights key): manifest only, not the records
        info[target.id] = {**record, "threads": loaded.train_config.threads,
                           "training_choice": loaded.training_choice,
                           "resources": usage.as_dict()}
    ctx.run.write(TrainingCurve, TrainingCurve.frame(rows), targets=provenance)
    return info


def _external_provenance(ctx: Context, target: TargetSection) -> dict[str, Any]:
    """What identifies a user's model: its source, class, family, declared rate and the
    sha256 of its weights (nothing is trained)."""
    from and_toolkit.targets.external import weights_sha256

    ext = ctx.external_model(target)
    return {**ext.source, "sample_rate": ext.sample_rate, "trained_here": False,
            "weights_sha256": weights_sha256(ext.module)}


def _record_external(ctx: Context, target: TargetSection) -> dict[str, Any]:
    """Record a user's model: clips streamed from disk at its rate, batches prepared by its
    family adapter, padded frames left out of every pooled value."""
    from and_toolkit.recording.record import record_to_run
    from and_toolkit.targets.external import batches_of

    ext = ctx.external_model(target)
    layers = external_layers(ctx, target)
    clips, plan = external_audio(ctx, target)
    n = ctx.probe().height
    prepared = batches_of(ext, clips, ext.batch_size(ctx.cfg.record.batch_size))
    with measured() as usage:
        record_to_run(
            ext.module, ((p.inputs, p.frames) for p in prepared), layers,
            ctx.cfg.record.pooling, ctx.run, target.id, ctx.probe_sha(), n_clips=n,
            progress=ctx.progress, provenance={"model": ext.source, "audio": plan},
        )
    return {"layers": list(layers), "audio": plan, "resources": usage.as_dict()}


def _whisper_frames(ctx: Context, cfg: Any) -> dict[int, np.ndarray] | None:
    """Valid frames of every probe clip for the Whisper target (the clips' own lengths, not the
    zero-padded window: ``{T: int [N]}``); None for other targets (every frame counts)."""
    if cfg.arch != "whisper-frozen":
        return None
    from and_toolkit.targets.pretrained.whisper import valid_frames

    lengths = np.array([len(w) for w in ctx.waveforms()])
    return valid_frames(lengths, cfg.whisper_window_seconds)


def stage_record(ctx: Context) -> dict[str, Any]:
    """Record every chosen layer of every target over the whole probe set (through the run's
    engine: this process, or an actor pool on a Ray cluster; same files either way). A user's
    model (``external``) is recorded in this process whatever the engine (its clips are streamed
    from disk through its family adapter); its stage info then says ``engine: local``.

    Stage info per target: ``layers`` (module paths in module order, the classifier last; read
    back by :meth:`~and_toolkit.run.Run.recorded_layers`).
    """
    engine = ctx.engine()
    info: dict[str, Any] = {"_execution": engine.describe("record")}  # "_": never a target id
    try:
        for target in ctx.cfg.targets:
            if target.external:  # streamed from disk in this process, whatever the engine
                info[target.id] = _record_external(ctx, target)
                if engine.name != "local":
                    info[target.id]["engine"] = "local"
                continue
            loaded = load_target(ctx, target)
            layers = recorded_layers(ctx, loaded)
            feats = inputs_of(ctx, loaded.train_config)
            job = RecordJob(
                model=loaded.model, inputs=feats,
                batch_size=batch_size_of(loaded.train_config, ctx.cfg.record.batch_size),
                layers=layers, pooling=ctx.cfg.record.pooling, run=ctx.run, model_id=target.id,
                probe_sha256=ctx.probe_sha(), provenance={"weights_key": loaded.weights_key},
                progress=ctx.progress, frames=_whisper_frames(ctx, loaded.train_config))
            with measured() as usage:
                engine.record(job)
            info[target.id] = {"layers": list(layers), "resources": usage.as_dict()}
    finally:
        engine.release()
    return info


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
    """Top-K / bottom-K clips per neuron (and the extra K of Figs 11-13)."""
    k = ctx.cfg.record.k
    df = _extremes_frame(ctx, k)
    ctx.run.write_extremes(df, None, {"k": k})
    for extra in ctx.cfg.record.extra_k:
        ctx.run.write_extremes(_extremes_frame(ctx, extra), extra, {"k": extra})
    return {"neurons": df.height // 2, "k": k, "extra_k": ctx.cfg.record.extra_k,
            "key": cache_key(k=k)[:8], "pooling": json.dumps(ctx.cfg.record.pooling),
            "_execution": ctx.engine().describe("extremes")}
