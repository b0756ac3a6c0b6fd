"""SSAST-style self-supervised pretraining of the AST encoder (masked-patch reconstruction).

Random patches of each log-mel are replaced by a learned mask token at the input of the AST
encoder; a linear decoder on the encoder outputs predicts the masked patches (per-patch
normalised values, mean-squared error; SSAST's generative objective). No labels are used. The
pretrained encoder then initialises the ``ast`` (fine-tuned) or ``ast-frozen`` (frozen, head
trained) targets when ``TrainConfig.pretrain`` is set.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import ASTForAudioClassification

from and_toolkit.targets.ast_config import ASTArchConfig
from and_toolkit.targets.augment import time_shift
from and_toolkit.targets.pretrain_config import PretrainConfig
from and_toolkit.targets.timing import autocast

__all__ = ["MaskedPatchModel", "PretrainConfig", "patchify", "pretrain_encoder", "random_mask"]


def patchify(x: torch.Tensor, cfg: ASTArchConfig) -> torch.Tensor:
    """Cut features into the AST's patches, in the order of its patch tokens.

    Args:
        x: Features [B, T, F].
        cfg: AST architecture (patch size and strides).

    Returns:
        [B, P, patch_size**2] with P = ``prod(cfg.grid())``.
    """
    img = x.transpose(1, 2).unsqueeze(1)  # [B, 1, F, T] as in ASTPatchEmbeddings
    cols = nn.functional.unfold(
        img, kernel_size=cfg.patch_size, stride=(cfg.frequency_stride, cfg.time_stride)
    )
    return cols.transpose(1, 2)


def random_mask(batch: int, n_patches: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Boolean [B, P] mask with exactly ``round(ratio * P)`` (>= 1) True entries per row."""
    k = max(1, int(round(ratio * n_patches)))
    order = torch.rand(batch, n_patches, generator=gen).argsort(dim=1)
    mask = torch.zeros(batch, n_patches, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask


class MaskedPatchModel(nn.Module):
    """Wrap an AST classifier's encoder with a mask token and a linear patch decoder.

    Args:
        ast: The model whose ``audio_spectrogram_transformer`` is pretrained (shared, in place).
        cfg: Its architecture.
    """

    def __init__(self, ast: ASTForAudioClassification, cfg: ASTArchConfig) -> None:
        super().__init__()
        self.encoder = ast.audio_spectrogram_transformer
        self.mask_token = nn.Parameter(torch.randn(1, 1, cfg.hidden_size) * 0.02)
        self.decoder = nn.Linear(cfg.hidden_size, cfg.patch_size**2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predict patches [B, P, patch**2] from features [B, T, F] with ``mask`` [B, P] hidden."""
        emb = self.encoder.embeddings
        tokens = emb.patch_embeddings(x)
        tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        b = tokens.shape[0]
        h = torch.cat(
            [emb.cls_token.expand(b, -1, -1), emb.distillation_token.expand(b, -1, -1), tokens],
            dim=1,
        )
        h = emb.dropout(h + emb.position_embeddings)
        for layer in self.encoder.layers:
            h = layer(h, None)
        return self.decoder(self.encoder.layernorm(h)[:, 2:])


def _normalised_patches(x: torch.Tensor, cfg: ASTArchConfig) -> torch.Tensor:
    p = patchify(x, cfg)
    return (p - p.mean(dim=-1, keepdim=True)) / (p.var(dim=-1, keepdim=True) + 1e-6).sqrt()


def pretrain_encoder(
    model: ASTForAudioClassification,
    cfg: PretrainConfig,
    arch: ASTArchConfig,
    features: np.ndarray,
    seed: int,
    precision: str,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Pretrain ``model``'s encoder in place by masked-patch reconstruction.

    Args:
        model: AST classifier (its ``classifier`` is not touched).
        cfg: Pretraining settings.
        arch: The model's architecture.
        features: Unlabelled float32 log-mels [N, T, F].
        seed: Seed of masking, shuffling, augmentation and decoder initialisation.
        precision: ``"bf16"`` (CPU autocast) or ``"fp32"``; ``"auto"`` must be resolved first
            (``resolve_train_config``).
        progress: Show a tqdm bar.
        on_epoch: Optional callback receiving each epoch's ``{epoch, loss, seconds}``.

    Returns:
        Per-epoch rows ``{epoch, loss, seconds}`` (loss = mean MSE on masked patches).

    Raises:
        ValueError: If ``features`` is not [N, T, F] with N >= 2, or ``precision`` is not
            ``"fp32"``/``"bf16"``.
    """
    import time

    autocast(precision)  # validates before any work
    if features.ndim != 3 or features.shape[0] < 2:
        raise ValueError(f"features: expected [N >= 2, T, F], got shape {features.shape}")
    x_all = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 10)
        wrapper = MaskedPatchModel(model, arch)
        wrapper.train()
        gen = torch.Generator().manual_seed(seed + 11)
        params = [p for p in wrapper.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        n = x_all.shape[0]
        steps = cfg.epochs * sum(
            1 for s in range(0, n, cfg.batch_size) if min(cfg.batch_size, n - s) >= 2
        )
        warm = int(cfg.warmup_frac * steps)

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        n_patches = math.prod(arch.grid())
        rows: list[dict[str, float]] = []
        bar = tqdm(total=steps, disable=not progress, desc="ssl-pretrain")
        for epoch in range(1, cfg.epochs + 1):
            t0, total, count = time.perf_counter(), 0.0, 0
            perm = torch.randperm(n, generator=gen)
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                if idx.numel() < 2:
                    continue
                xb = x_all[idx]
                if cfg.time_shift:
                    xb = time_shift(xb, gen, cfg.time_shift)
                mask = random_mask(len(idx), n_patches, cfg.mask_ratio, gen)
                target = _normalised_patches(xb, arch)
                with autocast(precision):
                    pred = wrapper(xb, mask)
                loss = ((pred.float() - target) ** 2).mean(dim=-1)[mask].mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                bar.update(1)
            row = {"epoch": epoch, "loss": total / count, "seconds": time.perf_counter() - t0}
            rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
            if on_epoch is not None:
                on_epoch(row)
        bar.close()
    return rows
