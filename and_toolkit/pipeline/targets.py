"""Target networks for the stages: train on a cache miss, load, evaluate (optionally pruned).

The loader of the pipeline's own models, beside :mod:`and_toolkit.pipeline.backends` (the
loader of third-party backends). A loaded target is kept on the :class:`Context` for the rest
of the process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from and_toolkit.config import TargetSection
from and_toolkit.errors import ConfigError, DataError
from and_toolkit.pipeline.context import Context
from and_toolkit.targets.config import TrainConfig

EVAL_BATCH = 64
"""Clips per forward pass when evaluating a target."""
WAVEFORM_BATCH = 8
"""At most this many clips per forward pass of a pretrained (waveform) target: Whisper's 30 s
window holds 1,500 frames, so one attention map is 1,500^2 floats per head and clip."""


def batch_size_of(cfg: TrainConfig, default: int) -> int:
    """Clips per forward pass for a target: ``default``, capped for waveform targets."""
    return min(default, WAVEFORM_BATCH) if cfg.takes_waveforms else default


@dataclass(frozen=True)
class LoadedTarget:
    """A trained target network and how it was made.

    Attributes:
        section: its config section.
        model: the network in eval mode (float32 weights).
        train_config: the training configuration (concrete precision).
        weights_key: content key of its weights in the cache.
        curve: per-epoch ``{epoch, train_loss, test_accuracy, seconds}``.
        training_choice: how precision and threads were chosen, with the measurements.
        trained_now: trained by this load (in this process), not read from the cache.
        trained_with: what the training of the weights ran with (threads, CPU, torch's
            kernels: :func:`~and_toolkit.targets.machine.training_facts`); None for weights
            cached before it was stored.
    """

    section: TargetSection
    model: nn.Module
    train_config: TrainConfig
    weights_key: str
    curve: list[dict[str, Any]]
    training_choice: dict[str, Any]
    trained_now: bool = False
    trained_with: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self.section.id


def train_config(ctx: Context, target: TargetSection) -> TrainConfig:
    """The TrainConfig of one target: tuned defaults + data dimensions + config overrides
    (validated when the config was loaded: ``targets.train_config.target_train_config``)."""
    from and_toolkit.targets.train_config import target_train_config

    if target.arch is None:
        raise ConfigError(f"target {target.id!r}: a user's model (pretrained / factory) is not "
                          "trained here")
    f = ctx.cfg.features
    n_classes = int(ctx.probe()["target"].to_numpy().max()) + 1
    return target_train_config(target.arch, seed=target.seed, epochs=target.epochs,
                               overrides=target.overrides, num_mel_bins=f.num_mel_bins,
                               max_length=f.max_length, n_classes=n_classes)


def resolved_train_config(ctx: Context, target: TargetSection, *, fresh: bool = False
                          ) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig with a concrete precision and thread count, and how they were chosen.

    ``precision = "auto"`` is resolved by a short measurement on this machine
    (:func:`and_toolkit.targets.precision.resolve_train_config`), remembered in the cache per
    machine (so a machine keeps its choice however loaded it is at start-up), unless the run's
    targets stage already recorded its choice for this target and ``fresh`` is False: later
    stages then use the recorded choice, so a run's weights key never depends on a second
    measurement.

    Returns:
        (resolved config, provenance: the precision decision).
    """
    from and_toolkit.targets.precision import resolve_train_config

    cfg = train_config(ctx, target)
    recorded = (ctx.run.stage_info("targets").get(target.id) or {}).get("training_choice")
    if not fresh and cfg.precision == "auto" and isinstance(recorded, dict) \
            and recorded.get("precision") in ("fp32", "bf16"):
        threads = cfg.threads if cfg.threads is not None else recorded.get("threads")
        cfg = cfg.model_copy(update={"precision": recorded["precision"], "threads": threads})
        return cfg, {**recorded, "reused_from": "run manifest (targets stage)"}
    shape = None if cfg.takes_waveforms else tuple(ctx.features().shape[1:])
    cfg, decision = resolve_train_config(cfg, memo=ctx.cache, clip_shape=shape)
    return cfg, decision.as_dict()


def labels_of(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """Class ids int64 [N] and fold ids int64 [N] of the probe clips (probe order)."""
    probe = ctx.probe()
    return probe["target"].to_numpy().astype(np.int64), probe["fold"].to_numpy().astype(np.int64)


def inputs_of(ctx: Context, cfg: TrainConfig) -> np.ndarray:
    """The model input of every probe clip: log-mel features [N, T, F], or waveforms [N, S]
    (16 kHz) for pretrained archs (which compute their own front end)."""
    return ctx.waveform_matrix() if cfg.takes_waveforms else ctx.features()


def weights_key_of(ctx: Context, cfg: TrainConfig) -> str:
    """The cache key of the weights ``cfg`` trains on the run's inputs and labels (waveform
    inputs are identified by the probe and data hashes, not hashed byte by byte)."""
    from and_toolkit.cache import cache_key
    from and_toolkit.targets import labels_sha, weights_key

    targets, folds = labels_of(ctx)
    inputs = (cache_key(kind="waveforms", probe=ctx.probe_sha(), data=ctx.data_sha())
              if cfg.takes_waveforms else ctx.features_sha())  # = features_sha(ctx.features())
    return str(weights_key(cfg, inputs, labels_sha(targets, folds)))


def load_target(ctx: Context, target: TargetSection, *, fresh: bool = False) -> LoadedTarget:
    """The trained model of ``target`` (trains on a cache miss), kept on the context.

    Args:
        fresh: choose precision / threads anew instead of reusing the run's recorded choice
            (the targets stage does).
    """
    if target.id in ctx.targets:
        return ctx.targets[target.id]  # type: ignore[no-any-return]
    from and_toolkit.targets import build_model, load_weights
    from and_toolkit.targets.concurrent import TRAININGS, train_and_store
    from and_toolkit.targets.machine import training_facts

    cfg, choice = resolved_train_config(ctx, target, fresh=fresh)
    key = weights_key_of(ctx, cfg)
    raw = ctx.cache.get_bytes("weights", key)
    curve = ctx.cache.get_json("curves", key)
    made: Any
    if raw is None or curve is None:
        trained = train_and_store(ctx.cache, cfg, key, inputs_of(ctx, cfg), *labels_of(ctx),
                                  progress=ctx.progress)
        model, curve = trained.model, trained.curve
        made = training_facts(cfg.threads, cfg.precision)
    else:
        made = ctx.cache.get_json(TRAININGS, key)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "weights.safetensors"
            path.write_bytes(raw)
            model = load_weights(build_model(cfg), path)
    model.eval()
    loaded = LoadedTarget(section=target, model=model, train_config=cfg, weights_key=key,
                          curve=list(curve), training_choice=choice,
                          trained_now=raw is None or curve is None,
                          trained_with=made if isinstance(made, dict) else None)
    ctx.targets[target.id] = loaded
    return loaded


def check_weights(ctx: Context, target: TargetSection) -> None:
    """Refuse to evaluate other weights than those the run's records were made with.

    Raises:
        DataError: the manifest's ``stages.targets.<id>.weights_key`` differs from the current
            key (training code, config or data changed since the targets stage).
    """
    recorded = (ctx.run.stage_info("targets").get(target.id) or {}).get("weights_key")
    if recorded is None:
        return
    now = weights_key_of(ctx, resolved_train_config(ctx, target)[0])
    if now != recorded:
        raise DataError(
            f"{ctx.run.manifest_path}: target {target.id!r} was recorded with weights "
            f"{recorded[:12]}, but its training code, config or data now give {now[:12]}; "
            "re-run the run from the targets stage (and-toolkit run <config> --force)")


def logits_on(ctx: Context, loaded: LoadedTarget, rows: np.ndarray,
              mask: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Logits float32 [len(rows), C] of a target on probe rows, optionally with units pruned
    (``mask``: ``{layer: bool [n_units]}``, True = pruned), in its training precision."""
    from and_toolkit.recording.prune import pruned
    from and_toolkit.targets import logits_of
    from and_toolkit.targets.precision import autocast

    feats = inputs_of(ctx, loaded.train_config)[rows]
    out = []
    with torch.inference_mode(), pruned(loaded.model, dict(mask or {})), \
            autocast(loaded.train_config.precision):
        step = batch_size_of(loaded.train_config, EVAL_BATCH)
        for i in range(0, len(feats), step):
            out.append(logits_of(loaded.model, torch.from_numpy(feats[i:i + step])).float())
    return torch.cat(out).numpy()


def recorded_layers(ctx: Context, loaded: LoadedTarget) -> list[str]:
    """Layers to record: the config's patterns over the default selection (module order)."""
    from and_toolkit.recording.hooks import select_layers

    rec = ctx.cfg.record
    return select_layers(loaded.model, include=rec.include, exclude=rec.exclude)


def external_audio(ctx: Context, target: TargetSection
                   ) -> tuple[Iterator[np.ndarray], dict[str, Any]]:
    """The probe clips of a user's model, one at a time at its declared rate, and the rate
    plan (file rates vs the model's, resampled count, resampler, downmix) for provenance.

    Clips are read from disk lazily, so a pass holds one batch of audio, whatever the probe
    size. Files at another rate are resampled (``probe.resample``) or refused, multi-channel
    files averaged (``probe.downmix``) or refused, each naming the file.
    """
    from and_toolkit.probe.audio import load_audio, rate_plan
    from and_toolkit.signal import resample

    ext = ctx.external_model(target)
    probe = ctx.probe()
    synthetic = ctx.cfg.probe.kind == "synthetic"
    plan = rate_plan(probe["sample_rate"].to_list(), probe["path"].to_list(), ext.sample_rate,
                     ctx.cfg.probe.resample or synthetic)
    plan = {**plan, "downmix": ctx.cfg.probe.downmix and not synthetic}

    def clips() -> Iterator[np.ndarray]:
        if synthetic:
            synth = ctx.synthetic()
            for clip_id, sr in zip(probe["clip_id"], probe["sample_rate"], strict=True):
                yield resample(synth.waveforms[clip_id], int(sr), ext.sample_rate)
            return
        root = ctx.dataset_root()
        for path in probe["path"]:
            yield load_audio(root / path, ext.sample_rate, ctx.cfg.probe.resample,
                             downmix=ctx.cfg.probe.downmix)

    return clips(), plan


def external_layers(ctx: Context, target: TargetSection) -> list[str]:
    """Layers of a user's model to record: the config's patterns over the family's default
    selection (its module types; the run's exclusions plus the family's)."""
    from and_toolkit.recording.hooks import select_layers

    ext = ctx.external_model(target)
    rec = ctx.cfg.record
    return select_layers(ext.module, include=rec.include, types=ext.types,
                         exclude=[*rec.exclude, *ext.exclude])


def untrained_reason(ctx: Context) -> str | None:
    """Why the paper's experiments / report cannot run on this config (a user's model among
    the targets), or None."""
    own = [t.id for t in ctx.cfg.targets if t.external]
    if not own:
        return None
    return (f"targets {own} are users' models (pretrained / factory): the paper's experiments "
            "and report need targets trained here on the probe's labels (arch)")
