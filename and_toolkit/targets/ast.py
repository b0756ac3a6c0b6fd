"""Small Audio Spectrogram Transformer targets built from a config (never downloaded).

``build_ast`` returns transformers' ``ASTForAudioClassification``; module paths follow
transformers 5 (``audio_spectrogram_transformer.layers.{i}.attention.{q,k,v,o}_proj``,
``...layers.{i}.mlp.fc1`` / ``.fc2``, ``classifier.dense``). ``build_ast_frozen`` is the same
network with every parameter outside ``classifier`` frozen (a random-feature baseline).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from transformers import ASTConfig, ASTForAudioClassification

M = TypeVar("M", bound=nn.Module)

__all__ = ["ASTArchConfig", "build_ast", "build_ast_frozen", "freeze_encoder", "to_hf_config"]


class ASTArchConfig(BaseModel):
    """Architecture of the small AST.

    Attributes:
        num_layers: Transformer blocks.
        hidden_size: Token width.
        num_heads: Attention heads (must divide ``hidden_size``).
        intermediate_size: MLP width.
        patch_size: Square patch side (mel bins and frames).
        frequency_stride: Patch stride along mel bins.
        time_stride: Patch stride along frames.
        num_mel_bins: Input mel bins F.
        max_length: Input frames T.
        dropout: Hidden dropout probability.
        attention_dropout: Attention-probability dropout.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_layers: int = Field(default=6, gt=0)
    hidden_size: int = Field(default=192, gt=0)
    num_heads: int = Field(default=3, gt=0)
    intermediate_size: int = Field(default=768, gt=0)
    patch_size: int = Field(default=16, gt=0)
    frequency_stride: int = Field(default=16, gt=0)
    time_stride: int = Field(default=16, gt=0)
    num_mel_bins: int = Field(default=64, gt=0)
    max_length: int = Field(default=512, gt=0)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    attention_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _check(self) -> ASTArchConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads: {self.num_heads} does not divide hidden_size {self.hidden_size}"
            )
        if self.patch_size > min(self.num_mel_bins, self.max_length):
            raise ValueError(
                f"patch_size: {self.patch_size} exceeds the input "
                f"({self.max_length} frames x {self.num_mel_bins} mel bins)"
            )
        return self

    def grid(self) -> tuple[int, int]:
        """Number of patches along (frequency, time)."""
        f = (self.num_mel_bins - self.patch_size) // self.frequency_stride + 1
        t = (self.max_length - self.patch_size) // self.time_stride + 1
        return f, t


def to_hf_config(cfg: ASTArchConfig, n_classes: int) -> ASTConfig:
    """Translate to a transformers ``ASTConfig`` with ``n_classes`` labels.

    Args:
        cfg: Architecture settings.
        n_classes: Number of classes (> 1).

    Returns:
        The ``ASTConfig`` (SDPA attention).

    Raises:
        ValueError: If ``n_classes < 2``.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes: need at least 2, got {n_classes}")
    hf = ASTConfig(
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
        patch_size=cfg.patch_size,
        frequency_stride=cfg.frequency_stride,
        time_stride=cfg.time_stride,
        max_length=cfg.max_length,
        num_mel_bins=cfg.num_mel_bins,
    )
    hf.num_labels = n_classes
    hf._attn_implementation = "sdpa"
    return hf


def build_ast(cfg: ASTArchConfig, n_classes: int) -> ASTForAudioClassification:
    """Build a randomly initialised AST classifier (uses the current torch RNG, no downloads).

    Args:
        cfg: Architecture settings.
        n_classes: Number of classes (> 1).

    Returns:
        ``ASTForAudioClassification`` in train mode; input [B, T, F], output ``.logits`` [B, C].
    """
    model = ASTForAudioClassification(to_hf_config(cfg, n_classes))
    model.train()
    return model


def freeze_encoder(model: M) -> M:
    """Freeze every parameter outside ``classifier`` (in place) and return the model."""
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("classifier."))
    return model


def build_ast_frozen(cfg: ASTArchConfig, n_classes: int) -> ASTForAudioClassification:
    """Build the AST with a frozen random encoder; only ``classifier`` (LayerNorm + Linear) trains.

    Args:
        cfg: Architecture settings.
        n_classes: Number of classes (> 1).

    Returns:
        ``ASTForAudioClassification`` whose non-classifier parameters have ``requires_grad=False``.
    """
    return freeze_encoder(build_ast(cfg, n_classes))
