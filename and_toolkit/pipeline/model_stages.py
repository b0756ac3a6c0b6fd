"""Stages around the target networks: train (or reuse), record activations, extremes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from and_toolkit.cache import cache_key
from and_toolkit.config import TargetSection
from and_toolkit.pipeline.context import Context
from and_toolkit.records.models import Extremes, TrainingCurve

EVAL_BATCH = 64


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(
            out.get(k), dict) else v
    return out


def feature_config(ctx: Context) -> Any:
    """The FeatureConfig of the run."""
    from and_toolkit.targets.features import FeatureConfig

    f = ctx.cfg.features
    return FeatureConfig(num_mel_bins=f.num_mel_bins, max_length=f.max_length)


def train_config(ctx: Context, target: TargetSection) -> Any:
    """The TrainConfig of one target: tuned defaults + config overrides + data dimensions."""
    from and_toolkit.targets.config import DEFAULT_TARGETS, TrainConfig

    probe = ctx.probe()
    f = ctx.cfg.features
    base = DEFAULT_TARGETS[target.arch].model_dump(mode="json")
    n_classes = int(probe["target"].to_numpy().max()) + 1
    dims: dict[str, Any] = {"n_classes": n_classes, "seed": target.seed,
            "ast": {"num_mel_bins": f.num_mel_bins, "max_length": f.max_length},
            "cnn": {"num_mel_bins": f.num_mel_bins}}
    if target.epochs is not None:
        dims["epochs"] = target.epochs
    return TrainConfig.model_validate(_deep_merge(_deep_merge(base, dims), target.overrides))


def _labels(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    probe = ctx.probe()
    return probe["target"].to_numpy().astype(np.int64), probe["fold"].to_numpy().astype(np.int64)


def load_target(ctx: Context, target: TargetSection) -> nn.Module:
    """The trained model of ``target`` (trains on a cache miss). Eval mode, float32."""
    memo = f"model:{target.id}"
    if memo in ctx.memo:
        return ctx.memo[memo]  # type: ignore[no-any-return]
    from and_toolkit.targets import (
        build_model,
        features_sha,
        labels_sha,
        load_weights,
        save_weights,
        train_target,
        weights_key,
    )

    cfg = train_config(ctx, target)
    feats = ctx.features(feature_config(ctx))
    targets, folds = _labels(ctx)
    key = weights_key(cfg, features_sha(feats), labels_sha(targets, folds))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        raw = ctx.cache.get_bytes("weights", key)
        curve = ctx.cache.get_json("curves", key)
        if raw is None or curve is None:
            trained = train_target(cfg, feats, targets, folds, progress=ctx.progress)
            save_weights(trained.model, path)
            ctx.cache.put_bytes("weights", key, path.read_bytes())
            curve = trained.curve
            ctx.cache.put_json("curves", key, curve)
            model = trained.model
        else:
            path.write_bytes(raw)
            model = load_weights(build_model(cfg), path)
    model.eval()
    ctx.memo[memo] = model
    ctx.memo[f"curve:{target.id}"] = curve
    ctx.memo[f"weights:{target.id}"] = key
    return model


def stage_targets(ctx: Context) -> dict[str, Any]:
    """Train (or reuse) every target; write ``training.parquet``; report fold-1 accuracy."""
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}
    for target in ctx.cfg.targets:
        load_target(ctx, target)
        curve = ctx.memo[f"curve:{target.id}"]
        rows += [{"model": target.id, "epoch": int(c["epoch"]), "train_loss": float(
            c["train_loss"]), "test_accuracy": float(c["test_accuracy"]),
            "seconds": float(c["seconds"])} for c in curve]
        info[target.id] = {
            "arch": target.arch, "weights_key": ctx.memo[f"weights:{target.id}"],
            "test_accuracy": curve[-1]["test_accuracy"] if curve else None,
            "train_seconds": round(sum(c["seconds"] for c in curve), 1),
            "test_fold": train_config(ctx, target).test_fold,
        }
    ctx.run.write(TrainingCurve, TrainingCurve.frame(rows), targets=info)
    return info


def logits_on(ctx: Context, target: TargetSection, rows: np.ndarray,
              mask: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Logits [len(rows), C] of ``target`` on probe rows, optionally with units pruned."""
    from and_toolkit.recording.prune import pruned
    from and_toolkit.targets import logits_of

    model = load_target(ctx, target)
    feats = ctx.features(feature_config(ctx))[rows]
    out = []
    with torch.inference_mode(), pruned(model, mask or {}), eval_precision(ctx, target):
        for i in range(0, len(feats), EVAL_BATCH):
            out.append(logits_of(model, torch.from_numpy(feats[i:i + EVAL_BATCH])).float())
    return torch.cat(out).numpy()


def eval_precision(ctx: Context, target: TargetSection) -> Any:
    """The autocast context the target was trained and tested in (bf16 on CPU, or none)."""
    import contextlib

    if train_config(ctx, target).precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def recorded_layers(ctx: Context, model: nn.Module) -> list[str]:
    """Layers to record: the config's patterns over the default selection."""
    from and_toolkit.recording.hooks import select_layers

    rec = ctx.cfg.record
    return select_layers(model, include=rec.include, exclude=rec.exclude)


def stage_record(ctx: Context) -> dict[str, Any]:
    """Record every chosen layer of every target over the whole probe set."""
    from and_toolkit.recording.record import record_to_run

    feats = ctx.features(feature_config(ctx))
    bs = ctx.cfg.record.batch_size
    info: dict[str, Any] = {}
    for target in ctx.cfg.targets:
        model = load_target(ctx, target)
        layers = recorded_layers(ctx, model)
        batches = (torch.from_numpy(feats[i:i + bs]) for i in range(0, len(feats), bs))
        written = record_to_run(
            model, batches, layers, ctx.cfg.record.pooling, ctx.run.root / "activations",
            target.id, ctx.probe_sha(), n_clips=len(feats), progress=ctx.progress,
            provenance={"weights_key": ctx.memo[f"weights:{target.id}"]},
        )
        info[target.id] = {"layers": len(written)}
    return info


def _extremes_frame(ctx: Context, k: int) -> pl.DataFrame:
    from and_toolkit.recording.extremes import extremes

    clip_ids = ctx.probe()["clip_id"].to_list()
    frames = []
    for f in ctx.run.activation_files():
        acts = pl.read_parquet(f)
        frames.append(extremes(acts, clip_ids, k))
    return pl.concat(frames) if frames else Extremes.empty()


def stage_extremes(ctx: Context) -> dict[str, Any]:
    """Top-K / bottom-K clips per neuron (and the extra K of Figs 11-13 under results/)."""
    k = ctx.cfg.record.k
    df = _extremes_frame(ctx, k)
    ctx.run.write(Extremes, df, k=k)
    for extra in ctx.cfg.record.extra_k:
        from and_toolkit.store import write_records

        write_records(Extremes, _extremes_frame(ctx, extra),
                      ctx.run.root / f"extremes_k{extra}.parquet", provenance={"k": extra})
    return {"neurons": df.height // 2, "k": k, "extra_k": ctx.cfg.record.extra_k,
            "key": cache_key(k=k)[:8], "pooling": json.dumps(ctx.cfg.record.pooling)}
