"""Training the linear head of a frozen pretrained target on its clip embeddings.

The frozen backbone's clip embeddings (``model.embed``: YAMNet's 1024-d mean over patches,
Whisper's 512-d mean over the encoder frames that hold audio) are computed once per clip and kept
in the content cache (keyed by the pinned weights, the arch and its window, the clip's samples and
the torch version), so a head trained anew (another seed, epochs or floor) reads them back. The
head is trained on them with AdamW (seeded shuffling, label smoothing, cosine decay), on inputs
standardised with the training folds' mean and std (the std floored at ``head_sd_floor`` times
its median, when set), which are then folded into the head's weight and bias so the model maps
raw waveforms to logits. The head starts at zero (deterministic).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from and_toolkit.cache import Cache, array_bytes, bytes_array, cache_key

__all__ = ["clip_embeddings", "embedding_key", "train_frozen_head"]

EMBED_BATCH = 8
"""Clips per backbone forward pass while embedding."""


def embedding_key(backbone: str, wav: np.ndarray) -> str:
    """Content key of one clip's embedding: ``backbone`` (pinned sha256, arch and window, as the
    caller states them), the clip's float32 samples, the torch version."""
    h = hashlib.sha256(np.ascontiguousarray(wav, np.float32).tobytes()).hexdigest()
    return cache_key(kind="clip-embedding", backbone=backbone, samples=h,
                     n_samples=int(wav.shape[-1]), torch=torch.__version__,
                     layout="[D] float32 npy")


def clip_embeddings(model: Any, waveforms: np.ndarray, progress: bool = False,
                    cache: Cache | None = None, backbone: str = "") -> np.ndarray:
    """``model.embed`` of every clip: float32 [N, D] from waveforms float32 [N, S] (16 kHz).

    With a ``cache``, clips stored under ``backbone`` (see :func:`embedding_key`; it must name
    everything ``model.embed`` depends on) are read back and the others computed and stored.
    """
    keys = [embedding_key(backbone, w) for w in waveforms] if cache is not None else []
    rows: list[np.ndarray | None] = [None] * len(waveforms)
    if cache is not None:
        for i, key in enumerate(keys):
            raw = cache.get_bytes("clip-embedding", key)
            if raw is not None:
                rows[i] = bytes_array(raw)
    todo = [i for i, r in enumerate(rows) if r is None]
    with torch.inference_mode():
        for j in tqdm(range(0, len(todo), EMBED_BATCH), desc="embed", disable=not progress,
                      leave=False):
            batch = todo[j:j + EMBED_BATCH]
            emb = model.embed(torch.from_numpy(waveforms[batch])).float().numpy()
            for i, e in zip(batch, emb, strict=True):
                rows[i] = e
                if cache is not None:
                    cache.put_bytes("clip-embedding", keys[i], array_bytes(e))
    if not rows:
        raise ValueError("clip_embeddings: no clips")
    return np.stack([r for r in rows if r is not None]).astype(np.float32, copy=False)


def train_frozen_head(model: Any, cfg: Any, waveforms: np.ndarray, targets: np.ndarray,
                      folds: np.ndarray, progress: bool = False, cache: Cache | None = None,
                      backbone: str = "") -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train the ``classifier`` of a frozen pretrained target on fold != test_fold.

    Args:
        model: the target as built (``embed(wav) -> [B, D]`` and ``classifier``), modified.
        cfg: its ``TrainConfig`` (``test_fold``, ``n_classes``, ``epochs``, ``lr``,
            ``batch_size``, ``weight_decay``, ``label_smoothing``, ``seed``,
            ``head_sd_floor`` are used).
        waveforms: float32 [N, S] at 16 kHz.
        targets: int [N] class ids; folds: int [N].
        cache, backbone: where the clip embeddings are kept, and what they depend on (see
            :func:`clip_embeddings`).

    Returns:
        (model in eval mode, per-epoch ``{epoch, train_loss, test_accuracy, seconds}``; epoch
        1's seconds include computing or reading the embeddings).
    """
    if waveforms.ndim != 2 or len(waveforms) != len(targets):
        raise ValueError(f"waveforms: expected [N, S] with N = {len(targets)}, got "
                         f"{waveforms.shape}")
    start = time.perf_counter()
    model.eval()
    emb = torch.from_numpy(clip_embeddings(model, waveforms, progress, cache, backbone)).double()
    train = torch.from_numpy(folds != cfg.test_fold)
    test = ~train
    mu = emb[train].mean(0)
    sd = emb[train].std(0)
    if cfg.head_sd_floor is not None:
        sd = sd.clamp_min(cfg.head_sd_floor * float(sd.median()))
    sd = sd + 1e-6
    x = ((emb - mu) / sd).float()
    y = torch.from_numpy(targets.astype(np.int64))
    head = nn.Linear(x.shape[1], cfg.n_classes)
    nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    xtr, ytr = x[train], y[train]
    steps = cfg.epochs * math.ceil(len(xtr) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    curve: list[dict[str, Any]] = []
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = loss_fn(head(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        with torch.no_grad():
            hits = int((head(x[test]).argmax(1) == y[test]).sum())
            acc = hits / int(test.sum()) if test.any() else float("nan")
        now = time.perf_counter()
        curve.append({"epoch": epoch, "train_loss": total / len(xtr), "test_accuracy": acc,
                      "seconds": now - start})
        start = now
    with torch.no_grad():  # fold the standardisation into the head: W (e - mu) / sd + b
        w = head.weight.double() / sd
        model.classifier.weight.copy_(w.float())
        model.classifier.bias.copy_((head.bias.double() - w @ mu).float())
    return model.eval(), curve
