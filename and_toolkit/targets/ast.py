"""Small Audio Spectrogram Transformer targets built from a config (never downloaded).

``build_ast`` returns transformers' ``ASTForAudioClassification``; module paths follow
transformers 5 (``audio_spectrogram_transformer.layers.{i}.attention.{q,k,v,o}_proj``,
``...layers.{i}.mlp.fc1`` / ``.fc2``, ``classifier.dense``). ``build_ast_frozen`` is the same
network with every parameter outside ``classifier`` frozen (a random-feature baseline).
"""

from __future__ import annotations

from typing import TypeVar

from torch import nn
from transformers import ASTConfig, ASTForAudioClassification

from and_toolkit.targets.ast_config import ASTArchConfig

M = TypeVar("M", bound=nn.Module)

__all__ = ["ASTArchConfig", "build_ast", "build_ast_frozen", "freeze_encoder", "to_hf_config"]


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
