"""Pruning masks and their evaluation, shared by Table 4 / Fig 10 and Fig 4.

A :data:`Mask` follows :data:`and_toolkit.recording.prune.PruningMask`: ``{module path: bool
[n_units]}``, True = zero that output unit. Masks here are indexed by neuron id and always hold
every hidden layer (never the classifier). Evaluation is injected (:data:`Evaluate`); masks that
prune the same units (:func:`mask_sha`) are evaluated once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "BoolArray", "Evaluate", "EvaluateMany", "FloatArray", "Mask", "accuracy",
    "compat_row_order", "empty_mask", "evaluate_masks", "hidden_layers", "mask_from_units",
    "mask_sha", "n_pruned",
]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.floating[Any]]
Mask = dict[str, BoolArray]
"""Layer module path -> bool [n_units]; True = the unit's output is zeroed."""
Evaluate = Callable[[Mapping[str, BoolArray]], FloatArray]
"""``evaluate(mask) -> logits [n_test, n_classes]`` of the model with the masked units zeroed,
rows in the order of the test clips, column j = class with target id j."""
EvaluateMany = Callable[[Sequence[Mapping[str, BoolArray]]], Sequence[FloatArray]]
"""Optional batched form of :data:`Evaluate`: one logits array per mask, in order."""


def hidden_layers(layer_sizes: Mapping[str, int], classifier_layer: str) -> dict[str, int]:
    """``layer_sizes`` without the classifier, order kept. Raises ValueError on a size < 1."""
    bad = {k: v for k, v in layer_sizes.items() if v < 1}
    if bad:
        raise ValueError(f"layer_sizes: sizes must be >= 1, got {bad}")
    return {k: v for k, v in layer_sizes.items() if k != classifier_layer}


def empty_mask(hidden: Mapping[str, int]) -> Mask:
    """All-False mask (nothing pruned) for the hidden layers ``{layer: n_units}``."""
    return {layer: np.zeros(n, dtype=bool) for layer, n in hidden.items()}


def mask_from_units(hidden: Mapping[str, int], layers: Sequence[str], units: Sequence[int],
                    what: str = "units") -> Mask:
    """Mask with True at each ``(layers[i], units[i])``.

    Raises:
        ValueError: an unknown layer or a unit outside ``[0, n_units)`` (named in the message).
    """
    if len(layers) != len(units):
        raise ValueError(f"{what}: {len(layers)} layers for {len(units)} units")
    mask = empty_mask(hidden)
    lay = np.asarray(list(layers), dtype=object)
    uni = np.asarray(list(units), dtype=np.int64)
    for layer in dict.fromkeys(lay.tolist()):
        if layer not in mask:
            raise ValueError(f"{what}: layer {layer!r} is not a hidden layer of layer_sizes")
        sel = uni[lay == layer]
        bad = sel[(sel < 0) | (sel >= mask[layer].size)]
        if bad.size:
            raise ValueError(f"{what}: units {bad[:5].tolist()} outside layer {layer!r} "
                             f"({mask[layer].size} units)")
        mask[layer][sel] = True
    return mask


def compat_row_order(mask: Mapping[str, BoolArray]) -> Mask:
    """Authors' mask-row bug: a layer with k selected units prunes units 0..k−1 instead."""
    out: Mask = {}
    for layer, m in mask.items():
        new = np.zeros_like(m)
        new[: int(m.sum())] = True
        out[layer] = new
    return out


def mask_sha(mask: Mapping[str, npt.ArrayLike]) -> str:
    """sha256 (hex) of the pruned units of a mask; layers with nothing pruned do not count.

    Per layer in sorted order, only if some unit is pruned: ``b"<layer>\\0<n_units>\\0"`` and
    ``np.packbits`` of its bool [n_units] row. Masks that prune the same units hash equally
    whatever all-False layers they hold (``{}`` = the unpruned model). This is the identity of
    a mask everywhere: evaluation dedup here and the on-disk cache of pruned logits.
    """
    h = hashlib.sha256()
    for layer in sorted(mask):
        bits = np.asarray(mask[layer], dtype=bool)
        if bits.any():
            h.update(f"{layer}\0{bits.size}\0".encode() + np.packbits(bits).tobytes())
    return h.hexdigest()


def evaluate_masks(masks: Sequence[Mapping[str, BoolArray]], evaluate: Evaluate,
                   evaluate_many: EvaluateMany | None = None,
                   n_rows: int | None = None) -> list[FloatArray]:
    """Evaluate each distinct mask once (masks with equal :func:`mask_sha` share one).

    Args:
        masks: masks to evaluate.
        evaluate: single-mask evaluation (used when ``evaluate_many`` is None).
        evaluate_many: optional batched evaluation of all distinct masks in one call.
        n_rows: expected number of logits rows (test clips), checked if given.

    Returns:
        Logits arrays [n_test, n_classes] in the order of ``masks``.

    Raises:
        ValueError: a returned array is not 2-D, has the wrong row count or non-finite values.
    """
    keys = [mask_sha(m) for m in masks]
    unique = list(dict.fromkeys(keys))
    first = {k: masks[keys.index(k)] for k in unique}
    if evaluate_many is not None:
        results = list(evaluate_many([first[k] for k in unique]))
    else:
        results = [evaluate(first[k]) for k in unique]
    if len(results) != len(unique):
        raise ValueError(f"evaluate_many: returned {len(results)} arrays for {len(unique)} masks")
    by_key: dict[str, FloatArray] = {}
    for k, z in zip(unique, results, strict=True):
        arr = np.asarray(z, dtype=np.float64)
        if arr.ndim != 2 or (n_rows is not None and arr.shape[0] != n_rows):
            raise ValueError(f"evaluate: expected logits [{n_rows}, n_classes], got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("evaluate: logits contain NaN or inf")
        by_key[k] = arr
    return [by_key[k] for k in keys]



def n_pruned(mask: Mapping[str, BoolArray]) -> int:
    """Number of pruned units of a mask."""
    return int(sum(int(m.sum()) for m in mask.values()))


def accuracy(logits: FloatArray, targets: npt.NDArray[np.int64]) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``logits`` [n, C] against target ids [n]."""
    return float(np.mean(np.argmax(logits, axis=1) == targets))
