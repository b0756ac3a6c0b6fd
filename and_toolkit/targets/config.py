"""The model factory of the target networks; their training configuration and tuned defaults
are defined in the torch-free :mod:`~and_toolkit.targets.train_config` (re-exported here)."""

from __future__ import annotations

import torch
from torch import nn

from and_toolkit.targets.ast import build_ast, build_ast_frozen
from and_toolkit.targets.cnn import build_cnn
from and_toolkit.targets.train_config import (
    DEFAULT_TARGETS,
    FROZEN_PRETRAINED_ARCHS,
    PRETRAINED_ARCHS,
    Arch,
    TrainConfig,
)

__all__ = ["DEFAULT_TARGETS", "FROZEN_PRETRAINED_ARCHS", "PRETRAINED_ARCHS", "Arch", "TrainConfig",
           "build_model"]


def build_model(cfg: TrainConfig) -> nn.Module:
    """Build the randomly initialised target of ``cfg`` (seeded by ``cfg.seed``; global RNG kept).

    Args:
        cfg: Training configuration.

    Returns:
        The model in train mode (``ast-frozen``, ``*-frozen`` pretrained: only
        ``classifier.*`` requires grad; pretrained backbones carry their packaged weights).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        if cfg.arch == "ast":
            return build_ast(cfg.ast, cfg.n_classes)
        if cfg.arch == "ast-frozen":
            return build_ast_frozen(cfg.ast, cfg.n_classes)
        if cfg.arch in PRETRAINED_ARCHS:
            from and_toolkit.targets.pretrained.build import build_pretrained

            return build_pretrained(cfg.arch, cfg.n_classes, cfg.whisper_window_seconds)
        return build_cnn(cfg.cnn, cfg.n_classes)
