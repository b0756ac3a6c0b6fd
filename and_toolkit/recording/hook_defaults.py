"""Recording defaults the run configuration names (no torch: ``config.py`` imports them, and
reading a run's config must not import torch)."""

from __future__ import annotations

from typing import Literal

__all__ = ["DEFAULT_EXCLUDE", "DEFAULT_POOLING", "QKV_NAMES", "PoolingName"]

QKV_NAMES: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "query", "key", "value")
DEFAULT_EXCLUDE: tuple[str, ...] = (
    *(p for name in QKV_NAMES for p in (name, f"*.{name}")),
    "*embeddings.*", "*patch_embed*",
)
"""Excluded by default: attention query / key / value projections (the paper does not count them
as neurons) and input patch-embedding projections of transformers (a Conv2d in AST)."""

PoolingName = Literal["cls", "first", "mean", "max"]
"""Token pooling of ``[B, T, D]`` outputs (see :class:`~and_toolkit.recording.hooks.Pooling`)."""
DEFAULT_POOLING: PoolingName = "mean"
"""Default token pooling: the mean over all tokens. ``cls`` / ``first`` (token 0) is the authors'
choice, a switch; convolution outputs are mean-pooled over time-frequency either way."""
