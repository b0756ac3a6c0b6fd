"""Fine-tuning YAMNet's top blocks on the cached output of its frozen trunk.

``arch = "yamnet"`` with ``yamnet_tuned_blocks = N``: the front end, the stem and the separable
blocks below the top N are frozen (``requires_grad`` False). Their output for every clip (the
activation after block ``13 - N``, float32 ``[P * H, W, C]``, channels-last order; 480 KB for a
5 s clip and N = 2) is computed once, in batches of :data:`TRUNK_BATCH` clips, and kept in the
content cache, one entry per clip keyed by the pinned weights, N, the clip's samples and the
torch version (so memory holds only the requested clips' outputs); the epochs then run only
:class:`TopBlocks` (the top N blocks, the mean over patches and positions, the classifier), whose
modules are those of the full model: training them trains the full YAMNet in place, which the
pipeline then records, prunes and evaluates from waveforms as any target.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from and_toolkit.cache import Cache, array_bytes, bytes_array, cache_key
from and_toolkit.targets.pretrained.yamnet import YAMNet

__all__ = ["TRUNK_BATCH", "TopBlocks", "freeze_trunk", "trunk_key", "trunk_outputs"]

TRUNK_BATCH = 8
"""Clips per forward pass of the frozen trunk."""
N_BLOCKS = 13
"""YAMNet's separable blocks (``layers.1`` .. ``layers.13``; ``layers.0`` is the stem)."""


def first_tuned(n_tuned: int) -> int:
    """Index in ``YAMNet.layers`` of the lowest fine-tuned block (``layers.<i>``); ``n_tuned =
    14`` tunes the stem too (the frozen "trunk" is then the front end: log-mel patches)."""
    if not 1 <= n_tuned <= N_BLOCKS + 1:
        raise ValueError(f"yamnet_tuned_blocks: expected 1..{N_BLOCKS + 1}, got {n_tuned}")
    return N_BLOCKS + 1 - n_tuned


def freeze_trunk(model: YAMNet, n_tuned: int) -> None:
    """Only the top ``n_tuned`` blocks and ``classifier`` keep ``requires_grad``."""
    first = first_tuned(n_tuned)
    tuned = {f"layers.{i}." for i in range(first, N_BLOCKS + 1)} | {"classifier."}
    for name, p in model.named_parameters():
        p.requires_grad_(any(name.startswith(t) for t in tuned))


class TopBlocks(nn.Module):
    """The top blocks and head of a YAMNet: trunk outputs -> logits.

    Input: float32 ``[B, P * H * W * C]``, the trunk output of each clip flattened in
    channels-last order (:func:`trunk_outputs`); ``shape = (P * H, W, C)``. Output ``[B,
    classes]``: the full model's logits of those clips.
    """

    def __init__(self, model: YAMNet, n_tuned: int, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(list(model.layers)[first_tuned(n_tuned):])
        self.classifier = model.classifier
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.view(x.shape[0], *self.shape).permute(0, 3, 1, 2)  # channels-last [B, C, PH, W]
        for block in self.blocks:
            z = block(z)
        return self.classifier(z.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def _trunk(model: YAMNet, wav: torch.Tensor, first: int) -> torch.Tensor:
    x = model.clip_input(model.frontend(wav))
    for layer in list(model.layers)[:first]:
        x = layer(x)
    return x


def trunk_key(backbone_sha256: str, n_tuned: int, wav: np.ndarray) -> str:
    """Content key of one clip's trunk output: pinned weights, N, the clip's float32 samples,
    torch version."""
    h = hashlib.sha256(np.ascontiguousarray(wav, np.float32).tobytes()).hexdigest()
    return cache_key(kind="yamnet-trunk", backbone=backbone_sha256, tuned_blocks=n_tuned,
                     samples=h, n_samples=int(wav.shape[-1]), torch=torch.__version__,
                     layout="[P*H, W, C] float32 npy")


def trunk_outputs(model: YAMNet, waveforms: np.ndarray, rows: np.ndarray, n_tuned: int,
                  cache: Cache | None, backbone_sha256: str, progress: bool = False
                  ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The frozen trunk's output of the clips ``waveforms[rows]``, each computed once (clips
    already in ``cache`` are read from it, the others computed and stored).

    Args:
        model: the YAMNet (its packaged trunk weights).
        waveforms: float32 [N, S] at 16 kHz.
        rows: int [M] the clips wanted (no copy of ``waveforms[rows]`` is made).
        n_tuned: blocks fine-tuned above the trunk.
        cache: the content cache, or None (computed, not stored).
        backbone_sha256: the pinned sha256 of the weights (part of the keys).

    Returns:
        (float32 [M, P * H * W * C], (P * H, W, C)): the activation after block ``13 -
        n_tuned`` of each clip, flattened in channels-last order.
    """
    first = first_tuned(n_tuned)
    keys = [trunk_key(backbone_sha256, n_tuned, waveforms[r]) for r in rows]
    out: np.ndarray | None = None
    todo = []
    for i, key in enumerate(keys):
        raw = None if cache is None else cache.get_bytes("yamnet-trunk", key)
        if raw is None:
            todo.append(i)
            continue
        clip = bytes_array(raw)
        if out is None:
            out = np.empty((len(rows), *clip.shape), np.float32)
        out[i] = clip
    with torch.inference_mode():
        for j in tqdm(range(0, len(todo), TRUNK_BATCH), desc="yamnet trunk",
                      disable=not progress, leave=False):
            batch = todo[j:j + TRUNK_BATCH]
            z = _trunk(model, torch.from_numpy(waveforms[rows[batch]]), first)
            nhwc = z.permute(0, 2, 3, 1).float().numpy()  # [B, PH, W, C]
            if out is None:
                out = np.empty((len(rows), *nhwc.shape[1:]), np.float32)
            for i, clip in zip(batch, nhwc, strict=True):
                out[i] = clip
                if cache is not None:
                    cache.put_bytes("yamnet-trunk", keys[i], array_bytes(clip))
    if out is None:
        raise ValueError("trunk_outputs: no clips (rows is empty)")
    ph, w, c = (int(v) for v in out.shape[1:])
    return out.reshape(len(rows), -1), (ph, w, c)
