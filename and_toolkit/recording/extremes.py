"""Top-K / bottom-K clips of every neuron, vectorised, with a deterministic tie-break.

For each neuron, ``high`` lists the K clips with the largest activation in descending order and
``low`` the K clips with the smallest (most negative, signed values) in ascending order. Equal
values are ordered by clip id ascending on both sides, so results never depend on the probe
order or the sort algorithm.

Implementation: each float32 value is mapped to an order-preserving uint32, shifted into the
high half of a uint64 whose low half is the clip's rank among the sorted clip ids. Those keys are
unique, so ``argpartition`` + a sort of the K survivors gives the exact top-K in O(N) per
neuron. Neurons are processed in chunks (memory about ``chunk x N x 24`` bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from and_toolkit.records import Extremes

__all__ = ["extremes", "top_bottom_indices"]

_SIGN = np.uint32(0x80000000)


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """Map float32 values to uint64 keys with the same order (-0.0 and 0.0 equal)."""
    v = np.asarray(values, dtype=np.float32) + np.float32(0.0)  # turns -0.0 into +0.0
    bits = v.view(np.uint32)
    return np.where(bits & _SIGN, ~bits, bits | _SIGN).astype(np.uint64)


def _clip_ranks(clip_ids: Sequence[str]) -> np.ndarray:
    ids = np.asarray(list(clip_ids), dtype=str)
    order = np.argsort(ids, kind="stable")
    if ids.size > 1 and (ids[order][1:] == ids[order][:-1]).any():
        dup = ids[order][1:][ids[order][1:] == ids[order][:-1]][0]
        raise ValueError(f"clip_ids: {str(dup)!r} appears more than once")
    ranks = np.empty(ids.size, dtype=np.uint64)
    ranks[order] = np.arange(ids.size, dtype=np.uint64)
    return ranks


def _smallest_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k smallest keys of each row, in ascending key order."""
    if k < keys.shape[1]:
        part = np.argpartition(keys, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(keys.shape[1]), keys.shape).copy()
    order = np.argsort(np.take_along_axis(keys, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def top_bottom_indices(
    values: np.ndarray, clip_ids: Sequence[str], k: int, *, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the top-K and bottom-K clips of each neuron.

    Args:
        values: activations [n_neurons, N] (one row per neuron; cast to float32), finite.
        clip_ids: the N clip ids (unique), used only for the tie-break.
        k: number of clips per side, 1 <= k <= N.
        chunk: neurons per chunk (bounds memory).

    Returns:
        ``(high, low)``: int64 [n_neurons, k] clip indices; ``high`` by descending value,
        ``low`` by ascending value; ties by clip id ascending.

    Raises:
        ValueError: k outside [1, N], a clip-id count other than N, duplicate clip ids,
            non-finite values, or a non-2-D array.
    """
    mat = np.asarray(values, dtype=np.float32)
    if mat.ndim != 2:
        raise ValueError(f"values: expected a 2-D array, got shape {mat.shape}")
    n = mat.shape[1]
    if len(clip_ids) != n:
        raise ValueError(f"clip_ids: {len(clip_ids)} ids for N={n} clips")
    if k < 1 or k > n:
        raise ValueError(f"k: K={k} must be between 1 and the number of clips N={n}")
    if not np.isfinite(mat).all():
        rows = np.unique(np.nonzero(~np.isfinite(mat))[0])[:5].tolist()
        raise ValueError(f"values: non-finite activations in neuron row(s) {rows}")
    ranks = _clip_ranks(clip_ids)
    high = np.empty((mat.shape[0], k), dtype=np.int64)
    low = np.empty((mat.shape[0], k), dtype=np.int64)
    for start in range(0, mat.shape[0], chunk):
        ordered = _ordered_bits(mat[start:start + chunk])
        low[start:start + chunk] = _smallest_k((ordered << np.uint64(32)) | ranks, k)
        flipped = np.uint64(0xFFFFFFFF) - ordered
        high[start:start + chunk] = _smallest_k((flipped << np.uint64(32)) | ranks, k)
    return high, low


def extremes(
    values: np.ndarray | pl.DataFrame,
    clip_ids: Sequence[str],
    k: int,
    *,
    model: str | None = None,
    layer: str | None = None,
    units: Sequence[int] | None = None,
) -> pl.DataFrame:
    """``Extremes`` rows (high and low side) for every neuron.

    Args:
        values: either activations [N, n] of one layer (clips x units; then ``model`` and
            ``layer`` are required and ``units`` defaults to 0..n-1), or an ``ActivationTable``
            frame (any number of models / layers; keys are taken from it).
        clip_ids: the N clip ids in probe order (the order of the activation vectors).
        k: clips per side (e.g. 5, 10, 20); K > N is an error.
        model: model id (matrix input only).
        layer: layer path (matrix input only).
        units: unit index of each column (matrix input only).

    Returns:
        ``Extremes`` frame with 2 rows per neuron (side 'high' then 'low'), signed float32 values.

    Raises:
        ValueError: K > N or K < 1, missing model/layer for a matrix, a unit count other than n,
            clip-id count other than N, duplicate clip ids, non-finite values.
    """
    if isinstance(values, pl.DataFrame):
        mat = values["values"].to_numpy() if values.height else np.empty((0, len(clip_ids)))
        models = values["model"].to_list()
        layers = values["layer"].to_list()
        unit_list = values["unit"].to_list()
    else:
        arr = np.asarray(values)
        if arr.ndim != 2:
            raise ValueError(f"values: expected [N, n] activations, got shape {arr.shape}")
        if model is None or layer is None:
            raise ValueError("model, layer: required when values is a matrix")
        mat = arr.T
        unit_list = list(range(arr.shape[1])) if units is None else [int(u) for u in units]
        if len(unit_list) != arr.shape[1]:
            raise ValueError(f"units: {len(unit_list)} units for {arr.shape[1]} columns")
        models = [model] * arr.shape[1]
        layers = [layer] * arr.shape[1]
    high, low = top_bottom_indices(mat, clip_ids, k)
    n_rows = high.shape[0]
    ids = np.asarray(list(clip_ids), dtype=object)
    mat32 = np.asarray(mat, dtype=np.float32)
    # rows interleaved: neuron 0 high, neuron 0 low, neuron 1 high, ...
    idx = np.stack([high, low], axis=1).reshape(2 * n_rows, k)
    rows = np.repeat(np.arange(n_rows), 2)
    vals = mat32[rows[:, None], idx] + np.float32(0.0)
    df = pl.DataFrame({
        "model": pl.Series(np.repeat(np.asarray(models, dtype=object), 2), dtype=pl.String),
        "layer": pl.Series(np.repeat(np.asarray(layers, dtype=object), 2), dtype=pl.String),
        "unit": pl.Series(np.repeat(np.asarray(unit_list, dtype=np.int32), 2)),
        "side": pl.Series(np.tile(np.array(["high", "low"], dtype=object), n_rows),
                          dtype=pl.String),
        "k": pl.Series(np.full(2 * n_rows, k, dtype=np.int32)),
        "clip_ids": pl.Series(ids[idx].ravel().tolist(), dtype=pl.String)
        .reshape((2 * n_rows, k)).cast(pl.List(pl.String)) if n_rows else
        pl.Series([], dtype=pl.List(pl.String)),
        "values": pl.Series(vals.ravel()).reshape((2 * n_rows, k)).cast(pl.List(pl.Float32))
        if n_rows else pl.Series([], dtype=pl.List(pl.Float32)),
    }, schema=Extremes.polars_schema())
    return df
