"""Seeded, deterministic training and evaluation of the target networks on fold-split features."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import ASTForAudioClassification

from and_toolkit.cache import Cache
from and_toolkit.targets.ast import freeze_encoder
from and_toolkit.targets.augment import mixup, spec_augment, time_shift
from and_toolkit.targets.config import FROZEN_PRETRAINED_ARCHS, TrainConfig, build_model
from and_toolkit.targets.early_stop import EarlyStop, validation_rows
from and_toolkit.targets.pooled import pooled_outputs
from and_toolkit.targets.pretrain import pretrain_encoder
from and_toolkit.targets.pretrained.head import train_frozen_head
from and_toolkit.targets.pretrained.partial import TopBlocks, freeze_trunk, trunk_outputs
from and_toolkit.targets.pretrained.yamnet import YAMNet
from and_toolkit.targets.timing import autocast, torch_threads

__all__ = ["TrainedTarget", "evaluate", "logits_of", "train_target"]


@dataclass
class TrainedTarget:
    """A trained target network.

    Attributes:
        model: The network, in eval mode, float32 weights.
        config: The configuration it was trained with.
        curve: One dict per epoch: ``epoch`` (1-based), ``train_loss`` (mean soft cross-entropy
            on augmented batches), ``test_accuracy`` (fraction of the test fold,
            always evaluated in float32 like downstream use), ``seconds`` (wall time of the epoch incl. evaluation).
        pretrain_curve: Per-epoch ``{epoch, loss, seconds}`` of self-supervised pretraining
            (empty unless ``config.pretrain`` is set).
    """

    model: nn.Module
    config: TrainConfig
    curve: list[dict[str, float]] = field(default_factory=list)
    pretrain_curve: list[dict[str, float]] = field(default_factory=list)


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Forward features [B, T, F] (waveforms [B, S] for pretrained archs) and return logits
    [B, C] (handles transformers outputs)."""
    out = model(x)
    logits = getattr(out, "logits", out)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"model returned {type(out).__name__} without a logits tensor")
    return logits


def _check_data(features: np.ndarray, targets: np.ndarray, n_classes: int | None = None,
                ndims: tuple[int, ...] = (2, 3)) -> None:
    if features.ndim not in ndims:
        raise ValueError(f"features: expected log-mel [N, T, F] (or waveforms [N, S] for "
                         f"pretrained archs), got shape {features.shape}")
    if targets.shape != (features.shape[0],):
        raise ValueError(f"targets: expected shape ({features.shape[0]},), got {targets.shape}")
    if n_classes is not None and targets.size and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(
            f"targets: values must lie in 0..{n_classes - 1}, got {targets.min()}..{targets.max()}"
        )


def evaluate(
    model: nn.Module,
    features: np.ndarray,
    targets: np.ndarray,
    batch_size: int = 64,
    precision: str = "fp32",
) -> tuple[float, np.ndarray]:
    """Accuracy and logits of ``model`` on the given clips (model put in eval mode).

    Args:
        model: A target network taking features [B, T, F].
        features: float32 [N, T, F].
        targets: int [N] class ids.
        batch_size: Clips per forward pass.
        precision: ``"fp32"`` or ``"bf16"`` (CPU autocast).

    Returns:
        (accuracy in [0, 1], float32 logits [N, C]).

    Raises:
        ValueError: On mismatched shapes, an empty set, or another precision (e.g. ``"auto"``).
    """
    _check_data(features, targets)
    if features.shape[0] == 0:
        raise ValueError("features: no clips to evaluate")
    model.eval()
    chunks = []
    with torch.inference_mode(), autocast(precision):
        for start in range(0, features.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size]))
            chunks.append(logits_of(model, xb).float())
    logits = torch.cat(chunks).numpy()
    acc = float((logits.argmax(axis=1) == targets).mean())
    return acc, logits


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Weight decay on matrices/kernels only; not on biases, norms, tokens, position embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "token" in name or "position_embeddings" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total_steps, pct_start=max(cfg.warmup_frac, 1e-3)
        )
    warm = int(cfg.warmup_frac * total_steps)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches; a final batch of one clip is dropped (BatchNorm needs two)."""
    perm = torch.randperm(n, generator=gen)
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if idx.numel() >= 2:
            yield idx


def _augment(
    xb: torch.Tensor, yb: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    if cfg.time_shift:
        xb = time_shift(xb, gen, cfg.time_shift)
    if cfg.time_masks or cfg.freq_masks:
        xb = spec_augment(
            xb, gen, cfg.time_masks, cfg.time_mask_width, cfg.freq_masks, cfg.freq_mask_width
        )
    if cfg.mixup_alpha > 0 and float(torch.rand(1, generator=gen)) < cfg.mixup_prob:
        xb, yb = mixup(xb, yb, cfg.mixup_alpha, gen)
    return xb, yb


def train_target(
    cfg: TrainConfig,
    features: np.ndarray,
    targets: np.ndarray,
    folds: np.ndarray,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    cache: Cache | None = None,
) -> TrainedTarget:
    """Train the target of ``cfg`` on all folds except ``cfg.test_fold`` and test on that fold.

    Deterministic for a given config, data, torch build and thread count: initialisation uses
    ``cfg.seed``; shuffling and augmentation use a private ``torch.Generator`` (global RNG
    state is left untouched).

    ``cfg.precision`` must be concrete: ``"auto"`` is refused rather than resolved here, so the
    precision trained is always the one the caller keyed the weights with
    (``cfg, decision = resolve_train_config(cfg)`` first). If ``cfg.threads`` is set, torch
    runs with that many intra-op threads during training (restored afterwards).

    Args:
        cfg: Resolved training configuration.
        features: float32 log-mels [N, T, F] (see ``logmel_features``).
        targets: int class ids [N] in ``0..cfg.n_classes-1``.
        folds: int fold ids [N].
        progress: Show a tqdm bar over all optimiser steps.
        on_epoch: Optional callback receiving each epoch's curve row as it is produced
            (pretraining rows, which have a ``loss`` key instead, come first).
        cache: content cache for the frozen trunk's outputs of a partial YAMNet fine-tune
            (``yamnet_tuned_blocks``) and the clip embeddings of a frozen pretrained target;
            None computes them without storing.

    Returns:
        The :class:`TrainedTarget` (model in eval mode, per-epoch curve).

    Raises:
        ValueError: On mismatched shapes, out-of-range targets, an empty train/test split, or
            an unresolved ``precision="auto"``.
    """
    if cfg.precision == "auto":
        raise ValueError(
            "train_target: precision 'auto' is unresolved; train the config returned by "
            "and_toolkit.targets.precision.resolve_train_config(cfg) (and key it with that)"
        )
    _check_data(features, targets, cfg.n_classes, (2,) if cfg.takes_waveforms else (3,))
    if folds.shape != targets.shape:
        raise ValueError(f"folds: expected shape {targets.shape}, got {folds.shape}")
    test = folds == cfg.test_fold
    if not test.any() or test.all():
        raise ValueError(
            f"test_fold: fold {cfg.test_fold} must hold some but not all clips "
            f"(folds present: {sorted(set(folds.tolist()))})"
        )
    if cfg.arch in FROZEN_PRETRAINED_ARCHS:
        from and_toolkit.targets.pretrained.pins import backbone_sha256

        backbone = f"{cfg.arch} {backbone_sha256(cfg.arch)}" + (
            f" window {cfg.whisper_window_seconds:g} s" if cfg.arch.startswith("whisper") else "")
        with torch_threads(cfg.threads):
            model, curve = train_frozen_head(build_model(cfg), cfg, features, targets, folds,
                                             progress, cache, backbone)
        return TrainedTarget(model=model, config=cfg, curve=curve)
    if cfg.yamnet_tuned_blocks is not None:
        with torch_threads(cfg.threads):
            return _train_top_blocks(cfg, features, targets, test, progress, on_epoch, cache)
    x_train = torch.from_numpy(np.ascontiguousarray(features[~test], dtype=np.float32))
    y_train = torch.from_numpy(targets[~test].astype(np.int64))
    x_test, y_test = np.ascontiguousarray(features[test], dtype=np.float32), targets[test]

    with torch_threads(cfg.threads):
        return _train(cfg, features, x_train, y_train, x_test, y_test, test, progress, on_epoch)


def _train(
    cfg: TrainConfig,
    features: np.ndarray,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: np.ndarray,
    y_test: np.ndarray,
    test: np.ndarray,
    progress: bool,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> TrainedTarget:
    """Build, optionally pretrain, and fit the target of :func:`train_target`."""
    model = build_model(cfg)
    pre_curve: list[dict[str, float]] = []
    if cfg.pretrain is not None:
        if not isinstance(model, ASTForAudioClassification):
            raise TypeError(f"pretrain: expected an AST model, got {type(model).__name__}")
        for p in model.parameters():
            p.requires_grad_(True)
        ssl_x = features if cfg.pretrain.include_test_fold else features[~test]
        pre_curve = pretrain_encoder(
            model, cfg.pretrain, cfg.ast, ssl_x, cfg.seed, cfg.precision, progress, on_epoch
        )
        if cfg.arch == "ast-frozen":
            freeze_encoder(model)
    # Dropout draws from the global RNG: seed it inside a fork so callers' RNG is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 2)
        if cfg.encoder_once:  # the classifier alone, on the frozen encoder's pooled output
            pooled = pooled_outputs(model, features, cfg.precision, cfg.eval_batch_size,
                                    progress)
            head = model.classifier
            assert isinstance(head, nn.Module)
            curve = _fit(head, cfg, torch.from_numpy(pooled[~test]), y_train, pooled[test],
                         y_test, progress, on_epoch)
        else:
            curve = _fit(model, cfg, x_train, y_train, x_test, y_test, progress, on_epoch)
    model.eval()
    return TrainedTarget(model=model, config=cfg, curve=curve, pretrain_curve=pre_curve)


def _train_top_blocks(
    cfg: TrainConfig,
    waveforms: np.ndarray,
    targets: np.ndarray,
    test: np.ndarray,
    progress: bool,
    on_epoch: Callable[[dict[str, float]], None] | None,
    cache: Cache | None,
) -> TrainedTarget:
    """Fine-tune YAMNet's top ``cfg.yamnet_tuned_blocks`` blocks and head on the frozen trunk's
    outputs (computed once per clip, cached): see ``targets/pretrained/partial.py``."""
    from and_toolkit.targets.pretrained.pins import backbone_sha256

    if cfg.time_shift or cfg.time_masks or cfg.freq_masks:
        raise ValueError("yamnet_tuned_blocks: time_shift / time_masks / freq_masks act on "
                         "log-mel inputs; set them to 0 (the top blocks see trunk outputs)")
    n_tuned = cfg.yamnet_tuned_blocks
    model = build_model(cfg)
    if n_tuned is None or not isinstance(model, YAMNet):
        raise TypeError(f"yamnet_tuned_blocks: expected a YAMNet, got {type(model).__name__}")
    freeze_trunk(model, n_tuned)
    sha = backbone_sha256(cfg.arch)
    x_train, shape = trunk_outputs(model, waveforms, np.flatnonzero(~test), n_tuned, cache, sha,
                                   progress)
    x_test, _ = trunk_outputs(model, waveforms, np.flatnonzero(test), n_tuned, cache, sha)
    top = TopBlocks(model, n_tuned, shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 2)
        curve = _fit(top, cfg, torch.from_numpy(x_train),
                     torch.from_numpy(targets[~test].astype(np.int64)), x_test, targets[test],
                     progress, on_epoch)
    return TrainedTarget(model=model.eval(), config=cfg, curve=curve)


def _fit(
    model: nn.Module,
    cfg: TrainConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: np.ndarray,
    y_test: np.ndarray,
    progress: bool,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> list[dict[str, float]]:
    """The optimisation loop of :func:`train_target`; returns the per-epoch curve.

    With ``cfg.patience``, ``cfg.val_fraction`` of the training clips is held out
    (``targets/early_stop.py``): each row gains ``val_accuracy``, training stops after
    ``patience`` epochs without improvement and the best epoch's weights are restored (its row
    flagged ``restored``); the schedule still spans ``cfg.epochs``.
    """
    stopper: EarlyStop | None = None
    if cfg.patience is not None:
        held = validation_rows(y_train.numpy(), cfg.val_fraction, cfg.seed + 3)
        x_val, y_val = x_train[held].numpy(), y_train[held].numpy()
        keep = torch.from_numpy(~held)
        x_train, y_train = x_train[keep], y_train[keep]
        stopper = EarlyStop(cfg.patience)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr)
    steps_per_epoch = sum(
        1
        for s in range(0, len(y_train), cfg.batch_size)
        if min(cfg.batch_size, len(y_train) - s) >= 2
    )
    sched = _scheduler(opt, cfg, cfg.epochs * steps_per_epoch)
    eye = torch.eye(cfg.n_classes)
    smooth = cfg.label_smoothing
    curve: list[dict[str, float]] = []
    bar = tqdm(total=cfg.epochs * steps_per_epoch, disable=not progress, desc=cfg.arch)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for idx in _batches(len(y_train), cfg.batch_size, gen):
            soft = eye[y_train[idx]] * (1 - smooth) + smooth / cfg.n_classes
            xb, yb = _augment(x_train[idx], soft, cfg, gen)
            with autocast(cfg.precision):
                logits = logits_of(model, xb)
            loss = -(yb * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(
                    [p for p in model.parameters() if p.requires_grad], cfg.grad_clip
                )
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.update(1)
        acc, _ = evaluate(model, x_test, y_test, cfg.eval_batch_size, "fp32")
        stop = False
        row = {"epoch": epoch, "train_loss": total / count, "test_accuracy": acc}
        if stopper is not None:
            row["val_accuracy"], _ = evaluate(model, x_val, y_val, cfg.eval_batch_size, "fp32")
            stop = stopper.update(epoch, row["val_accuracy"], model)
        row["seconds"] = time.perf_counter() - t0
        curve.append(row)
        if on_epoch is not None:
            on_epoch(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{acc:.3f}")
        if stop:
            break
    bar.close()
    if stopper is not None:
        stopper.restore(model, curve)
    return curve
