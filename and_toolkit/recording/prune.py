"""Pruning (unit ablation) by output masks: forward hooks, or weight-row zeroing on a copy.

A :data:`PruningMask` maps a module path to a boolean vector over its output units; True (or 1)
marks a unit to zero. :func:`pruned` applies a mask with forward hooks on one model, reversibly;
:func:`zero_weight_rows` returns a copy whose weight rows and bias entries of those units are
zero (the reference code's ``prune.custom_from_mask``). Both give the same outputs: a zeroed
row and bias make the unit's output exactly 0, which is what the hook writes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from and_toolkit.recording.hooks import is_channels_first, module_width

__all__ = ["PruningMask", "mask_counts", "prunable_layers", "pruned", "validate_mask",
           "zero_weight_rows"]

PruningMask = Mapping[str, np.ndarray | torch.Tensor | Sequence[bool] | Sequence[int]]
"""``{module path: [width] bool / 0-1 vector}``; True / 1 = zero that output unit."""

M = TypeVar("M", bound=nn.Module)


def prunable_layers(model: nn.Module) -> dict[str, int]:
    """``{module path: number of output units}`` of every Linear / convolution of ``model``."""
    out: dict[str, int] = {}
    for name, module in model.named_modules():
        width = module_width(module)
        if name and width is not None:
            out[name] = width
    return out


def validate_mask(model: nn.Module, mask: PruningMask) -> dict[str, torch.Tensor]:
    """Check a mask against ``model`` and convert it to boolean tensors.

    Args:
        model: the model the mask is for.
        mask: ``{layer: [width] vector of bool or 0/1}``.

    Returns:
        ``{layer: bool tensor [width]}`` (True = zero the unit).

    Raises:
        ValueError: unknown layer (the message lists the prunable ones), a vector that is not
            1-D of the layer's width, or values other than 0/1.
    """
    layers = prunable_layers(model)
    out: dict[str, torch.Tensor] = {}
    for layer, vec in mask.items():
        if layer not in layers:
            avail = ", ".join(list(layers)[:20]) + (" ..." if len(layers) > 20 else "")
            raise ValueError(f"mask: unknown layer {layer!r}; prunable layers: {avail}")
        arr = vec.detach().cpu().numpy() if isinstance(vec, torch.Tensor) else np.asarray(vec)
        if arr.ndim != 1 or arr.shape[0] != layers[layer]:
            raise ValueError(
                f"mask[{layer!r}]: expected a vector of {layers[layer]} units, got shape "
                f"{arr.shape}"
            )
        if arr.dtype != np.bool_:
            if not np.isin(arr, (0, 1)).all():
                raise ValueError(f"mask[{layer!r}]: values must be bool or 0/1")
            arr = arr.astype(bool)
        out[layer] = torch.from_numpy(np.ascontiguousarray(arr))
    return out


def mask_counts(mask: PruningMask) -> dict[str, int]:
    """Number of units zeroed per layer."""
    return {k: int(np.count_nonzero(np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v)))
            for k, v in mask.items()}


def _hook(drop: torch.Tensor, conv_dims: int | None) -> Any:
    """Forward hook zeroing the ``drop`` units; ``conv_dims`` = spatial dims of a conv, else None."""
    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        d = drop.to(output.device)
        if conv_dims is not None:
            # batched [B, C, *spatial] or unbatched [C, *spatial]: broadcast over spatial dims
            d = d.view(-1, *([1] * conv_dims))
        # clone keeps the output's memory format (a masked_fill with a broadcast mask would
        # return channels-first memory for a channels-last output, and later reductions would
        # sum the kept units in another order)
        return output.clone().masked_fill_(d, 0.0)
    return hook


def _conv_dims(module: nn.Module) -> int | None:
    if is_channels_first(module):
        return len(module.kernel_size)  # type: ignore[arg-type]
    return None


@contextmanager
def pruned(model: M, mask: PruningMask) -> Iterator[M]:
    """Zero the masked output units of ``model`` while the block runs.

    Forward hooks replace each masked module's output by ``output * keep`` with keep = 1 - mask
    on the last dim (Linear) or the channel dim (convolutions), written as a masked fill so the
    zeros are exact +0.0. The hooks are removed on exit, also when the block raises.

    Args:
        model: the model to prune (not modified, no copy).
        mask: see :data:`PruningMask`.

    Yields:
        ``model`` itself.

    Raises:
        ValueError: see :func:`validate_mask` (raised before any hook is registered).
    """
    checked = validate_mask(model, mask)
    modules = dict(model.named_modules())
    handles = []
    try:
        for layer, drop in checked.items():
            module = modules[layer]
            handles.append(module.register_forward_hook(_hook(drop, _conv_dims(module))))
        yield model
    finally:
        for h in handles:
            h.remove()


def zero_weight_rows(model: M, mask: PruningMask) -> M:
    """A deep copy of ``model`` with the masked units' weight rows and bias entries set to 0.

    Args:
        model: source model (unchanged).
        mask: see :data:`PruningMask`.

    Returns:
        The pruned copy (same train/eval mode).

    Raises:
        ValueError: see :func:`validate_mask`; a grouped transposed convolution.
    """
    checked = validate_mask(model, mask)
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    with torch.no_grad():
        for layer, drop in checked.items():
            module = modules[layer]
            weight = module.weight
            assert isinstance(weight, torch.Tensor)
            rows = drop.to(weight.device)
            if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
                if module.groups != 1:
                    raise ValueError(
                        f"mask[{layer!r}]: weight zeroing of grouped transposed convolutions "
                        "is not supported; use pruned()"
                    )
                weight[:, rows] = 0.0  # ConvTranspose weights are [in, out, ...]
            else:
                weight[rows] = 0.0
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias[rows] = 0.0
    return twin
