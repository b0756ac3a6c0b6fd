"""A small audio-text model trained here: CNN audio tower, frozen sentence-encoder text tower.

The stand-in for CLAP when no CLAP weights are available (Module A's TAB evidence). The audio
tower is the target CNN trunk (:class:`~and_toolkit.targets.cnn.LogMelCNN`, its linear head
widened to the joint dimension) on the run's log-mel features [N, T, F]; the text tower is a
frozen sentence encoder (MiniLM by default) whose caption embeddings [N, D] are computed once
by the caller, followed by a trained projection. Training is symmetric InfoNCE with a learnable
temperature over in-batch pairs (clip, its caption), on the clips of every fold but
``test_fold`` -- no class labels are read.

Deterministic for a given config, data, torch build and thread count: initialisation uses
``cfg.seed``, shuffling and augmentation a private generator, dropout a forked global RNG.
This module is pure (arrays in, model out); the pipeline caches the weights by
:func:`audio_text_key`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from and_toolkit.targets.audio_text_config import AudioTextConfig
from and_toolkit.targets.augment import spec_augment, time_shift
from and_toolkit.targets.cnn import LogMelCNN
from and_toolkit.targets.timing import autocast, torch_threads

__all__ = ["AUDIO_TEXT_CODE_VERSION", "AudioTextConfig", "AudioTextModel", "TrainedAudioText",
           "audio_text_key", "embed_features", "train_audio_text", "zero_shot_accuracy"]

#: Bump when a change to this module changes the weights a config produces.
AUDIO_TEXT_CODE_VERSION = 1

WARMUP_FRAC = 0.1
"""Share of all steps with a linear learning-rate warm-up (then cosine decay to 0)."""
MAX_LOGIT_SCALE = 100.0
"""Upper clamp of the learnable inverse temperature exp(s) (CLIP's)."""


class AudioTextModel(nn.Module):
    """Audio tower (log-mel CNN) and text projection into one L2-normalised space.

    Module paths: ``audio`` (a :class:`LogMelCNN` whose ``head`` is the audio projection to
    d), ``text`` (the text projection from the frozen encoder's D; identity for
    ``text_projection = "none"``, then d = D), ``logit_scale`` (log of the inverse
    temperature).

    Args:
        cfg: the configuration.
        text_dim: width D of the frozen text embeddings (384 for MiniLM).
    """

    def __init__(self, cfg: AudioTextConfig, text_dim: int) -> None:
        super().__init__()
        if text_dim < 1:
            raise ValueError(f"text_dim: expected >= 1, got {text_dim}")
        dim = text_dim if cfg.text_projection == "none" else cfg.embed_dim
        self.audio = LogMelCNN(cfg.cnn, dim)
        self.text: nn.Module
        if cfg.text_projection == "none":
            self.text = nn.Identity()
        elif cfg.text_projection == "mlp":
            self.text = nn.Sequential(nn.Linear(text_dim, cfg.embed_dim), nn.GELU(),
                                      nn.Linear(cfg.embed_dim, cfg.embed_dim))
        else:
            self.text = nn.Linear(text_dim, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def embed_audio(self, features: torch.Tensor) -> torch.Tensor:
        """Log-mel features [B, T, F] -> L2-normalised float32 embeddings [B, d]."""
        return nn.functional.normalize(self.audio(features).float(), dim=-1)

    def embed_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """Frozen text embeddings [M, D] -> L2-normalised float32 embeddings [M, d]."""
        return nn.functional.normalize(self.text(text_embeddings.float()), dim=-1)

    def scale(self) -> torch.Tensor:
        """The inverse temperature exp(logit_scale), clamped to [1, 100]."""
        return self.logit_scale.exp().clamp(1.0, MAX_LOGIT_SCALE)


def build_audio_text(cfg: AudioTextConfig, text_dim: int) -> AudioTextModel:
    """A randomly initialised :class:`AudioTextModel` seeded by ``cfg.seed`` (global RNG kept)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return AudioTextModel(cfg, text_dim)


@dataclass
class TrainedAudioText:
    """A trained audio-text model.

    Attributes:
        model: the model in eval mode (float32 weights).
        config: its configuration.
        curve: per epoch ``{epoch, train_loss, temperature, seconds}`` (loss: mean symmetric
            InfoNCE over the epoch's batches, nats).
        n_train: training clip-caption pairs.
    """

    model: AudioTextModel
    config: AudioTextConfig
    curve: list[dict[str, float]] = field(default_factory=list)
    n_train: int = 0


def _check(features: np.ndarray, caption_embeddings: np.ndarray, folds: np.ndarray) -> None:
    if features.ndim != 3:
        raise ValueError(f"features: expected log-mel [N, T, F], got shape {features.shape}")
    n = features.shape[0]
    if caption_embeddings.ndim != 2 or caption_embeddings.shape[0] != n:
        raise ValueError(f"caption_embeddings: expected [{n}, D], got "
                         f"{caption_embeddings.shape}")
    if folds.shape != (n,):
        raise ValueError(f"folds: expected shape ({n},), got {folds.shape}")


def symmetric_info_nce(audio: torch.Tensor, text: torch.Tensor, scale: torch.Tensor
                       ) -> torch.Tensor:
    """CLIP's loss: mean of audio->text and text->audio cross-entropy over the batch.

    Args:
        audio: L2-normalised [B, d]; row i is paired with ``text`` row i.
        text: L2-normalised [B, d].
        scale: inverse temperature (scalar tensor).

    Returns:
        Scalar loss in nats (log B for uninformative embeddings).
    """
    logits = scale * audio @ text.T
    target = torch.arange(audio.shape[0])
    return 0.5 * (nn.functional.cross_entropy(logits, target)
                  + nn.functional.cross_entropy(logits.T, target))


def train_audio_text(
    cfg: AudioTextConfig,
    features: np.ndarray,
    caption_embeddings: np.ndarray,
    folds: np.ndarray,
    progress: bool = False,
    on_epoch: Callable[[dict[str, float], AudioTextModel], None] | None = None,
) -> TrainedAudioText:
    """Train on every clip whose fold is not ``cfg.test_fold`` (clip i paired with caption i).

    Args:
        cfg: the configuration.
        features: float32 log-mels [N, T, F].
        caption_embeddings: float32 [N, D] frozen text-encoder embeddings of each clip's
            caption.
        folds: int fold ids [N].
        progress: show a progress bar over the steps.
        on_epoch: called with each epoch's curve row and the model (e.g. to evaluate; the model
            is in eval mode during the call).

    Returns:
        The trained model (eval mode) and its curve.

    Raises:
        ValueError: on mismatched shapes, or fewer than two training clips.
    """
    _check(features, caption_embeddings, folds)
    train = folds != cfg.test_fold
    if int(train.sum()) < 2:
        raise ValueError(f"folds: need >= 2 clips outside test_fold {cfg.test_fold}, got "
                         f"{int(train.sum())}")
    x = torch.from_numpy(np.ascontiguousarray(features[train], dtype=np.float32))
    t = torch.from_numpy(np.ascontiguousarray(caption_embeddings[train], dtype=np.float32))
    model = build_audio_text(cfg, t.shape[1])
    with torch_threads(cfg.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 2)
        curve = _fit(model, cfg, x, t, progress, on_epoch)
    model.eval()
    return TrainedAudioText(model=model, config=cfg, curve=curve, n_train=int(train.sum()))


def _fit(model: AudioTextModel, cfg: AudioTextConfig, x: torch.Tensor, t: torch.Tensor,
         progress: bool,
         on_epoch: Callable[[dict[str, float], AudioTextModel], None] | None,
         ) -> list[dict[str, float]]:
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    n = x.shape[0]
    steps = sum(1 for s in range(0, n, cfg.batch_size) if min(cfg.batch_size, n - s) >= 2)
    total_steps = cfg.epochs * steps
    warm = max(1, int(WARMUP_FRAC * total_steps))

    def factor(step: int) -> float:  # linear warm-up, then cosine to 0
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total_steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    curve: list[dict[str, float]] = []
    bar = tqdm(total=cfg.epochs * steps, disable=not progress, desc="audio-text")
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            idx = perm[start:start + cfg.batch_size]
            if idx.numel() < 2:  # BatchNorm and InfoNCE need two
                continue
            xb = x[idx]
            if cfg.time_shift:
                xb = time_shift(xb, gen, cfg.time_shift)
            if cfg.time_masks or cfg.freq_masks:
                xb = spec_augment(xb, gen, cfg.time_masks, cfg.time_mask_width,
                                  cfg.freq_masks, cfg.freq_mask_width)
            with autocast(cfg.precision):
                audio = model.audio(xb)
            loss = symmetric_info_nce(nn.functional.normalize(audio.float(), dim=-1),
                                      model.embed_text(t[idx]), model.scale())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
            bar.update(1)
        row = {"epoch": epoch, "train_loss": total / count,
               "temperature": float(1.0 / model.scale().detach()),
               "seconds": time.perf_counter() - t0}
        curve.append(row)
        if on_epoch is not None:
            model.eval()
            on_epoch(row, model)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}")
    bar.close()
    return curve


def embed_features(model: AudioTextModel, features: np.ndarray, batch_size: int = 64
                   ) -> np.ndarray:
    """Audio embeddings float32 [N, d] (L2-normalised) of log-mel features [N, T, F]."""
    if features.ndim != 3:
        raise ValueError(f"features: expected log-mel [N, T, F], got shape {features.shape}")
    model.eval()
    out = [np.zeros((0, model.audio.head.out_features), np.float32)]
    with torch.inference_mode():
        for i in range(0, features.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(features[i:i + batch_size],
                                                       dtype=np.float32))
            out.append(model.embed_audio(xb).numpy())
    return np.concatenate(out)


def zero_shot_accuracy(audio: np.ndarray, class_text: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of clips whose most similar class text is their class.

    Args:
        audio: L2-normalised audio embeddings [N, d].
        class_text: L2-normalised embeddings [C, d] of one text per class (class id = row).
        targets: int class ids [N].

    Returns:
        Accuracy in [0, 1] (chance 1 / C).
    """
    if audio.shape[0] != targets.shape[0] or audio.shape[0] == 0:
        raise ValueError(f"audio [{audio.shape[0]}] and targets [{targets.shape[0]}]: need the "
                         "same non-zero length")
    return float(((audio @ class_text.T).argmax(axis=1) == targets).mean())


def audio_text_key(cfg: AudioTextConfig, features_sha: str, captions: Sequence[str],
                   text_encoder_id: str, folds: np.ndarray) -> str:
    """Content key of everything that determines the trained weights.

    Covers the config (without ``threads``), the feature hash, the exact caption list, the
    frozen text encoder's id, the folds (which clips train), :data:`AUDIO_TEXT_CODE_VERSION`
    and the torch version.

    Returns:
        64-character hex SHA-256.
    """
    payload = {
        "kind": "audio-text",
        "config": cfg.model_dump(mode="json", exclude={"threads"}),
        "features_sha": features_sha,
        "captions_sha": hashlib.sha256(json.dumps(list(captions)).encode()).hexdigest(),
        "text_encoder": text_encoder_id,
        "folds_sha": hashlib.sha256(np.ascontiguousarray(folds, np.int64).tobytes()).hexdigest(),
        "code_version": AUDIO_TEXT_CODE_VERSION,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
