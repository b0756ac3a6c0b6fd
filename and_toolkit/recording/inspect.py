"""What a model offers to record: every Linear / convolution with its output shape, pooling and
neuron count, found by one forward pass with hooks (``and-toolkit layers``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch import nn

from and_toolkit.recording.hooks import Pooling, is_channels_first, pooling_label, time_dim

__all__ = ["LayerRow", "layer_rows"]


@dataclass(frozen=True)
class LayerRow:
    """One recordable module.

    Attributes:
        path: module path in ``named_modules``.
        kind: module class name (``Linear``, ``Conv1d``, ``Conv2d``).
        shape: output shape of the dummy batch, e.g. ``(1, 49, 768)`` (None: not run).
        pooling: how the output is pooled to one value per clip and neuron, e.g.
            ``mean over T of [B, T, D]``.
        neurons: units after pooling (None: not run).
        default: recorded by default (not excluded).
    """

    path: str
    kind: str
    shape: tuple[int, ...] | None
    pooling: str
    neurons: int | None
    default: bool


_LAYOUTS = {("tokens", 3): "[B, T, D]", ("conv", 3): "conv1d [B, C, T]",
            ("conv", 4): "conv2d [B, C, F, T]", ("tokens", 4): "[B, C, H, W]"}


def _describe(shape: tuple[int, ...], channels_first: bool, pooling: Pooling) -> str:
    ndim = len(shape)
    label = pooling_label(ndim, pooling, channels_first)
    if ndim == 2:
        return "none ([B, D])"
    layout = _LAYOUTS.get(("conv" if channels_first else "tokens", ndim), f"{ndim}-D")
    dim = time_dim(ndim, channels_first)
    if label in ("cls", "first"):
        return f"token 0 of {layout}"
    axes = "T" if dim == 1 or ndim == 3 else "F, T"
    return f"{label} over {axes} of {layout}"


def layer_rows(model: nn.Module, inputs: torch.Tensor | Mapping[str, torch.Tensor],
               types: tuple[type[nn.Module], ...], exclude: Sequence[str],
               pooling: Pooling | str = "mean") -> list[LayerRow]:
    """Every module of ``types`` with its output shape from one forward pass of ``inputs``.

    Args:
        model: the network (put in eval mode for the pass, then restored).
        inputs: one batch (tensor passed positionally, dict as keywords).
        types: module types to list.
        exclude: fnmatch patterns of modules not recorded by default (listed, ``default``
            False).
        pooling: the pooling the recording would use.

    Returns:
        Rows in ``named_modules`` order.
    """
    pool = Pooling.parse(pooling)
    mods = [(n, m) for n, m in model.named_modules() if n and isinstance(m, types)]
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Any:
        def fn(module: nn.Module, args: Any, output: Any) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if isinstance(out, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(int(s) for s in out.shape)
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in mods]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.inference_mode():
            model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.train(training)
    rows = []
    for name, m in mods:
        shape = shapes.get(name)
        cf = is_channels_first(m)
        neurons = None if shape is None else (shape[1] if cf or len(shape) == 2 else shape[-1])
        rows.append(LayerRow(
            path=name, kind=type(m).__name__, shape=shape,
            pooling=_describe(shape, cf, pool) if shape else "not run by the forward pass",
            neurons=neurons, default=not any(fnmatchcase(name, p) for p in exclude)))
    return rows
