"""Choosing, naming and pooling the modules to record, by torch module path.

Layers are addressed by their module path in ``model.named_modules()`` (e.g.
``audio_spectrogram_transformer.layers.3.mlp.fc1``), never by evaluated strings. Each recorded
module output is pooled to one value per clip and output channel:

* ``[B, D]`` (e.g. a classifier) is kept as is (pooling label ``none``);
* ``[B, T, D]`` token outputs are pooled over tokens by ``cls`` / ``first`` (token 0, the
  authors' behaviour; for AST token 0 is the CLS token), ``mean`` or ``max``;
* convolution outputs ``[B, C, ...]`` (and any other 4-D output, read as ``[B, C, H, W]``) are
  pooled over the positions by ``mean`` (default) or ``max``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from and_toolkit.recording.hook_defaults import (
    DEFAULT_EXCLUDE,
    DEFAULT_POOLING,
    PoolingName,
)

__all__ = [
    "DEFAULT_EXCLUDE", "DEFAULT_POOLING", "PoolingName", "DEFAULT_TYPES", "Pooling", "block_index", "closest_paths", "is_channels_first",
    "layer_aliases", "module_width", "pool_output", "pooling_label", "resolve_modules",
    "select_layers", "time_dim",
]

DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
"""Module types recorded by default: every Linear (MLP, attention output, classifier) and Conv2d."""


_BLOCK_RE = re.compile(r"(?:^|\.)(?:layers|layer|blocks|block|h)\.(\d+)(?:\.|$)")


class Pooling(BaseModel):
    """How a module output is pooled to one value per clip and channel.

    Attributes:
        tokens: for ``[B, T, D]`` outputs: ``cls`` / ``first`` take token 0 (reference
            behaviour), ``mean`` / ``max`` pool over all T tokens.
        spatial: for convolution outputs ``[B, C, H, W]``: ``mean`` or ``max`` over H, W.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens: PoolingName = DEFAULT_POOLING
    spatial: Literal["mean", "max"] = "mean"

    @classmethod
    def parse(cls, pooling: Pooling | str) -> Pooling:
        """Accept a :class:`Pooling` or a token-pooling name ('cls', 'first', 'mean', 'max').

        A name sets the token pooling; ``'max'`` also sets max spatial pooling.
        """
        if isinstance(pooling, Pooling):
            return pooling
        if pooling == "cls":
            return cls(tokens="cls")
        if pooling == "first":
            return cls(tokens="first")
        if pooling == "mean":
            return cls(tokens="mean")
        if pooling == "max":
            return cls(tokens="max", spatial="max")
        raise ValueError(
            f"pooling: expected one of 'cls', 'first', 'mean', 'max', got {pooling!r}"
        )


def is_channels_first(module: nn.Module) -> bool:
    """True for convolutions, whose outputs are ``[B, C, ...]`` (channels on dim 1)."""
    return isinstance(module, nn.modules.conv._ConvNd)


def module_width(module: nn.Module) -> int | None:
    """Number of output units of a Linear / convolution, None for other module types."""
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.modules.conv._ConvNd):
        return int(module.out_channels)
    return None


def pooling_label(ndim: int, pooling: Pooling, channels_first: bool) -> str:
    """The ``ActivationTable.pooling`` value for an output of ``ndim`` dimensions."""
    if ndim == 2:
        return "none"
    if channels_first or ndim >= 4:
        return pooling.spatial
    return pooling.tokens


def time_dim(ndim: int, channels_first: bool) -> int | None:
    """The frame (time) axis of an output: 1 for tokens ``[B, T, D]``, 2 for conv1d
    ``[B, C, T]``, 3 for conv2d ``[B, C, F, T]`` (time last); None for ``[B, D]``."""
    if ndim == 2:
        return None
    if channels_first or ndim >= 4:
        return ndim - 1
    return 1


def _masked(output: torch.Tensor, dim: int, valid: torch.Tensor, mode: str) -> torch.Tensor:
    """Mean / max over ``dims`` >= 2 (channels first) or dim 1 (tokens), frames along ``dim``
    at or after ``valid[b]`` left out."""
    t = output.shape[dim]
    keep = torch.arange(t, device=output.device)[None, :] < valid.to(output.device)[:, None]
    shape = [output.shape[0]] + [1] * (output.ndim - 1)
    shape[dim] = t
    keep = keep.reshape(shape)
    dims = (1,) if dim == 1 else tuple(range(2, output.ndim))
    if mode == "mean":
        count = keep.expand_as(output).sum(dim=dims).clamp(min=1).to(output.dtype)
        return torch.where(keep, output, torch.zeros((), dtype=output.dtype,
                                                     device=output.device)).sum(dim=dims) / count
    low = torch.full((), float("-inf"), dtype=output.dtype, device=output.device)
    return torch.where(keep, output, low).amax(dim=dims)


def pool_output(output: torch.Tensor, pooling: Pooling, channels_first: bool,
                valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pool a module output to ``[B, D]``.

    Args:
        output: ``[B, D]``, ``[B, T, D]`` (tokens, channels last), or ``[B, C, ...]`` when
            ``channels_first`` (convolutions) or 4-D.
        pooling: pooling modes.
        channels_first: channels are on dim 1 (convolution outputs).
        valid: int ``[B]``, the number of leading frames along the time axis
            (:func:`time_dim`) that hold audio; later (padded) frames never enter a mean or
            max. None: every frame counts. Each clip needs at least one valid frame.

    Returns:
        ``[B, D]`` tensor of the same dtype.

    Raises:
        ValueError: an output with fewer than 2 dims, or more than 3 dims for a channels-last
            (non-conv) module other than the 4-D case.
    """
    if output.ndim == 2:
        return output
    if valid is not None:
        dim = time_dim(output.ndim, channels_first)
        if dim is None or output.ndim > 4 or valid.shape != (output.shape[0],):
            raise ValueError(f"valid frames {tuple(valid.shape)} do not fit an output of shape "
                             f"{tuple(output.shape)}")
        if bool((valid < 1).any()):
            raise ValueError(f"valid frames: every clip needs at least one, got {valid.tolist()}")
        if dim == 1 and pooling.tokens in ("cls", "first"):
            return output[:, 0, :]
        mode = pooling.tokens if dim == 1 else pooling.spatial
        return _masked(output, dim, valid, mode)
    if channels_first or output.ndim == 4:
        if output.ndim < 3:
            raise ValueError(f"conv output: expected [B, C, ...], got {tuple(output.shape)}")
        dims = tuple(range(2, output.ndim))
        return output.mean(dim=dims) if pooling.spatial == "mean" else output.amax(dim=dims)
    if output.ndim == 3:
        if pooling.tokens in ("cls", "first"):
            return output[:, 0, :]
        return output.mean(dim=1) if pooling.tokens == "mean" else output.amax(dim=1)
    raise ValueError(
        f"module output of shape {tuple(output.shape)}: expected [B, D], [B, T, D] or a "
        "convolution output [B, C, ...]"
    )


def select_layers(
    model: nn.Module,
    include: Sequence[str] | None = None,
    types: tuple[type[nn.Module], ...] = DEFAULT_TYPES,
    exclude: Sequence[str] | None = None,
) -> list[str]:
    """Module paths to record, in ``named_modules`` order (the classifier is normally last).

    Args:
        model: any torch module.
        include: fnmatch patterns on the module path (e.g. ``'*.mlp.fc1'``); None = every
            module of ``types``. Each pattern must match at least one module of ``types``.
        types: module types to consider (default Linear and Conv2d).
        exclude: fnmatch patterns to drop; None = :data:`DEFAULT_EXCLUDE` (attention q/k/v);
            pass ``()`` to keep q/k/v.

    Returns:
        Module paths, e.g. ``['audio_spectrogram_transformer.layers.0.attention.o_proj', ...,
        'classifier.dense']``.

    Raises:
        ValueError: an include pattern matches nothing, or the selection is empty.
    """
    excl = DEFAULT_EXCLUDE if exclude is None else tuple(exclude)
    candidates = [n for n, m in model.named_modules() if n and isinstance(m, types)]
    if include is not None:
        for pat in include:
            if not any(fnmatchcase(n, pat) for n in candidates):
                raise ValueError(
                    f"include: pattern {pat!r} matches no {_type_names(types)} module; "
                    f"closest module paths: {_preview(closest_paths(pat, candidates), 5)}"
                )
        candidates = [n for n in candidates if any(fnmatchcase(n, p) for p in include)]
    chosen = [n for n in candidates if not any(fnmatchcase(n, p) for p in excl)]
    if not chosen:
        raise ValueError(
            f"no {_type_names(types)} module left to record (include={include}, exclude={excl})"
        )
    return chosen


def closest_paths(pattern: str, paths: Sequence[str], n: int = 5) -> list[str]:
    """The ``n`` module paths most similar to ``pattern`` (difflib ratio, wildcards dropped),
    most similar first; for error messages."""
    import difflib

    bare = pattern.replace("*", "").replace("?", "").strip(".")
    scored = sorted(paths, key=lambda p: -difflib.SequenceMatcher(None, bare, p).ratio())
    return scored[:n]


def resolve_modules(model: nn.Module, layers: Iterable[str]) -> dict[str, nn.Module]:
    """Look up modules by path.

    Raises:
        ValueError: a path is not a module of ``model`` (the message lists available paths),
            or a path is repeated.
    """
    modules = dict(model.named_modules())
    out: dict[str, nn.Module] = {}
    for layer in layers:
        if layer in out:
            raise ValueError(f"layers: {layer!r} is listed twice")
        if not layer or layer not in modules:
            avail = [n for n, m in modules.items() if n and module_width(m) is not None]
            raise ValueError(
                f"layers: unknown layer {layer!r}; closest module paths: "
                f"{_preview(closest_paths(layer, avail or [n for n in modules if n]), 5)}"
            )
        out[layer] = modules[layer]
    return out


def block_index(path: str) -> int | None:
    """1-based block number of a module path, None outside numbered blocks.

    The first ``layers.<i>`` / ``layer.<i>`` / ``blocks.<i>`` / ``block.<i>`` / ``h.<i>``
    component gives block ``i + 1``; e.g. ``audio_spectrogram_transformer.layers.3.mlp.fc1`` -> 4.
    """
    m = _BLOCK_RE.search(path)
    return int(m.group(1)) + 1 if m else None


def layer_aliases(
    layers: Sequence[str], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Short, unique, readable names for module paths.

    A path inside block b (see :func:`block_index`) becomes ``block<b>.<suffix>`` where suffix is
    the shortest tail of the path after the block index that no other listed layer of the same
    block shares (``...layers.3.mlp.fc1`` -> ``block4.fc1``; transformers 4.x
    ``encoder.layer.3.attention.output.dense`` -> ``block4.attention.output.dense`` because
    ``output.dense`` is also a layer). Other paths keep their full path (``classifier.dense``).

    Args:
        layers: module paths.
        overrides: explicit ``{path: alias}`` entries that win over the rule.

    Returns:
        ``{path: alias}`` for every listed path.

    Raises:
        ValueError: two layers end up with the same alias.
    """
    overrides = dict(overrides or {})
    tails: dict[str, tuple[int, list[str]]] = {}
    for path in layers:
        m = _BLOCK_RE.search(path)
        if m:
            tails[path] = (int(m.group(1)) + 1, path[m.end():].split(".") if path[m.end():] else [])
    aliases: dict[str, str] = {}
    for path in layers:
        if path in overrides:
            aliases[path] = overrides[path]
            continue
        if path not in tails:
            aliases[path] = path
            continue
        block, tail = tails[path]
        others = [t for p, (b, t) in tails.items() if b == block and p != path]
        chosen = tail
        for k in range(1, len(tail) + 1):
            if all(o[-k:] != tail[-k:] for o in others):
                chosen = tail[-k:]
                break
        aliases[path] = ".".join([f"block{block}", *chosen])
    seen: dict[str, str] = {}
    for path, alias in aliases.items():
        if alias in seen:
            raise ValueError(f"aliases: {seen[alias]!r} and {path!r} both map to {alias!r}")
        seen[alias] = path
    return aliases


def _type_names(types: tuple[type[nn.Module], ...]) -> str:
    return "/".join(t.__name__ for t in types)


def _preview(names: Sequence[str], n: int = 12) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")
