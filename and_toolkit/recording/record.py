"""Record pooled activations of any torch module in one pass, all layers at once.

:func:`record_activations` returns ``{layer: float32 [N, width]}``; :func:`record_to_run` writes
one ``ActivationTable`` file per layer through :meth:`and_toolkit.run.Run.write_activations`.

Memory: forward hooks pool each recorded output to ``[B, width]`` as the batch runs and copy it
into a float32 ``[N, width]`` array per layer, preallocated when ``n_clips`` is known. Memory
beyond the forward pass itself is therefore the activation matrix (N x total width x 4 bytes),
plus, while one layer's file is written, about two copies of that one layer. Without ``n_clips``
the per-batch pieces are concatenated at the end (briefly twice the matrix).

The model is put in eval mode for the pass (dropout off) and its train/eval flags are restored
afterwards; the forward pass runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch import nn

from and_toolkit.errors import RecordValidationError
from and_toolkit.recording.hooks import (
    DEFAULT_POOLING,
    Pooling,
    block_index,
    is_channels_first,
    layer_aliases,
    pool_output,
    pooling_label,
    resolve_modules,
)
from and_toolkit.records import ActivationTable
from and_toolkit.run import Run

__all__ = [
    "Batch", "Partition", "activation_frame", "check_finite", "nonfinite_rows", "probe_sha256",
    "record_activations", "record_partition", "record_to_run", "write_layer",
]

Batch = torch.Tensor | Mapping[str, torch.Tensor]
"""One model input: a tensor passed positionally, or a dict of tensors passed as keywords."""

def probe_sha256(clip_ids: Sequence[str]) -> str:
    """SHA-256 of the ordered clip ids (JSON array, UTF-8): identifies a probe set and its order.

    Args:
        clip_ids: clip ids in probe order.

    Returns:
        64-character hex digest.
    """
    return hashlib.sha256(json.dumps(list(clip_ids), ensure_ascii=False).encode()).hexdigest()


@dataclass
class _LayerBuffer:
    """Pooled outputs of one layer, filled batch by batch."""

    channels_first: bool
    n_clips: int | None
    array: np.ndarray | None = None
    chunks: list[np.ndarray] = field(default_factory=list)
    filled: int = 0
    calls: int = 0
    label: str = ""

    def add(self, pooled: np.ndarray) -> None:
        b = pooled.shape[0]
        if self.n_clips is None:
            self.chunks.append(pooled.copy())
        else:
            if self.array is None:
                self.array = np.empty((self.n_clips, pooled.shape[1]), dtype=np.float32)
            if self.filled + b > self.n_clips:
                raise ValueError(
                    f"batches: more than n_clips={self.n_clips} clips were fed to the model"
                )
            if pooled.shape[1] != self.array.shape[1]:
                raise ValueError(
                    f"output width changed from {self.array.shape[1]} to {pooled.shape[1]}"
                )
            self.array[self.filled:self.filled + b] = pooled
        self.filled += b
        self.calls += 1

    def result(self) -> np.ndarray:
        if self.n_clips is None:
            return np.concatenate(self.chunks, axis=0) if self.chunks else np.empty((0, 0),
                                                                                     np.float32)
        if self.filled != self.n_clips or self.array is None:
            raise ValueError(f"batches: expected n_clips={self.n_clips} clips, got {self.filled}")
        return self.array


def _make_hook(layer: str, buf: _LayerBuffer, pooling: Pooling) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"layer {layer!r}: output is {type(output).__name__}, not a tensor")
        if not buf.label:
            buf.label = pooling_label(out.ndim, pooling, buf.channels_first)
        pooled = pool_output(out, pooling, buf.channels_first)
        buf.add(pooled.detach().to(device="cpu", dtype=torch.float32).numpy())
    return hook


def _to_device(batch: Batch, device: torch.device) -> Batch:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    raise TypeError(f"batches: expected a tensor or a dict of tensors, got {type(batch).__name__}")


def _run(
    model: nn.Module,
    batches: Iterable[Batch],
    layers: Sequence[str],
    pooling: Pooling | str,
    n_clips: int | None,
    progress: bool,
) -> dict[str, _LayerBuffer]:
    """One forward pass over ``batches`` with hooks on ``layers``; returns the filled buffers."""
    pool = Pooling.parse(pooling)
    if not layers:
        raise ValueError("layers: at least one layer is required")
    if n_clips is not None and n_clips <= 0:
        raise ValueError(f"n_clips: must be positive, got {n_clips}")
    modules = resolve_modules(model, layers)
    buffers = {name: _LayerBuffer(is_channels_first(m), n_clips) for name, m in modules.items()}
    handles = [m.register_forward_hook(_make_hook(name, buffers[name], pool))
               for name, m in modules.items()]
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    iterator: Iterable[Batch] = batches
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(batches, desc="record", unit="batch", file=sys.stderr, leave=False)
    try:
        model.eval()
        with torch.inference_mode():
            for i, batch in enumerate(iterator):
                inp = _to_device(batch, device)
                before = {n: (b.filled, b.calls) for n, b in buffers.items()}
                if isinstance(inp, Mapping):
                    model(**inp)
                else:
                    model(inp)
                sizes = {n: b.filled - before[n][0] for n, b in buffers.items()}
                calls = {n: b.calls - before[n][1] for n, b in buffers.items()}
                bad = {n: c for n, c in calls.items() if c != 1}
                if bad:
                    raise ValueError(
                        f"batch {i}: each recorded module must run exactly once per forward "
                        f"pass; calls: {bad}"
                    )
                if len(set(sizes.values())) != 1:
                    raise ValueError(f"batch {i}: layers saw different batch sizes {sizes}")
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.train(training)
    return buffers


def record_activations(
    model: nn.Module,
    batches: Iterable[Batch],
    layers: Sequence[str],
    pooling: Pooling | str = DEFAULT_POOLING,
    progress: bool = True,
    *,
    n_clips: int | None = None,
) -> dict[str, np.ndarray]:
    """Record pooled outputs of ``layers`` over all batches in one forward pass.

    Args:
        model: any torch module; batches are moved to the device of its first parameter.
        batches: model inputs in probe order (tensor ``[B, ...]`` or dict of tensors).
        layers: module paths (see :func:`~and_toolkit.recording.hooks.select_layers`).
        pooling: :class:`~and_toolkit.recording.hooks.Pooling` or a token-pooling name.
        progress: show a tqdm progress bar on stderr.
        n_clips: total number of clips, if known: outputs are preallocated (bounded memory) and
            the count is checked.

    Returns:
        ``{layer: float32 [N, width]}`` in the order of ``layers``; row i = i-th clip fed.

    Raises:
        ValueError: unknown layer, a recorded module that runs other than once per forward,
            an output shape that cannot be pooled, or a clip count other than ``n_clips``.
        TypeError: a batch is neither a tensor nor a dict.
    """
    buffers = _run(model, batches, layers, pooling, n_clips, progress)
    return {name: buf.result() for name, buf in buffers.items()}


def activation_frame(
    values: np.ndarray,
    *,
    model_id: str,
    layer: str,
    alias: str,
    block: int | None,
    pooling: str,
    probe_sha256: str,
) -> pl.DataFrame:
    """``ActivationTable`` frame of one layer: one row per unit, ``values`` = column of ``values``.

    Args:
        values: float32 [N, width] (clips x units).
        model_id, layer, alias, block, pooling, probe_sha256: the record fields.

    Returns:
        Frame with ``width`` rows; ``values`` is ``Array(Float32, N)``.
    """
    if values.ndim != 2:
        raise ValueError(f"values: expected [N, width], got shape {values.shape}")
    n, width = values.shape
    vec = np.ascontiguousarray(values.T, dtype=np.float32)
    schema = ActivationTable.polars_schema(width=n)
    return pl.DataFrame({
        "model": pl.Series([model_id] * width, dtype=pl.String),
        "layer": pl.Series([layer] * width, dtype=pl.String),
        "unit": pl.Series(np.arange(width, dtype=np.int32)),
        "alias": pl.Series([alias] * width, dtype=pl.String),
        "block": pl.Series([block] * width, dtype=pl.Int32),
        "pooling": pl.Series([pooling] * width, dtype=pl.String),
        "probe_sha256": pl.Series([probe_sha256] * width, dtype=pl.String),
        "values": pl.Series(vec, dtype=pl.Array(pl.Float32, n)),
    }, schema=schema)


def record_to_run(
    model: nn.Module,
    batches: Iterable[Batch],
    layers: Sequence[str],
    pooling: Pooling | str,
    run: Run,
    model_id: str,
    probe_sha256: str,
    aliases: Mapping[str, str] | None = None,
    blocks: Mapping[str, int | None] | None = None,
    *,
    n_clips: int,
    progress: bool = True,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Record ``layers`` in one pass and write one ``ActivationTable`` file per layer.

    Args:
        model, batches, layers, pooling, progress: as :func:`record_activations`.
        run: the run the files go to (:meth:`~and_toolkit.run.Run.activation_path`).
        model_id: target-network id (a safe path component).
        probe_sha256: :func:`probe_sha256` of the clip ids in the order fed.
        aliases: ``{layer: alias}`` overrides on top of
            :func:`~and_toolkit.recording.hooks.layer_aliases`.
        blocks: ``{layer: 1-based block or None}`` overrides on top of
            :func:`~and_toolkit.recording.hooks.block_index`.
        n_clips: number of clips N (the arrays are preallocated; memory = the [N, total width]
            float32 matrix).
        provenance: extra JSON-serialisable provenance stored in each file.

    Returns:
        ``{layer: path written}``. Files are written only after the whole pass succeeded, each
        atomically; identical inputs give identical bytes.

    Raises:
        ValueError: see :func:`record_activations`; unsafe ``model_id`` / layer path.
        RecordValidationError: non-finite activations (nothing more is written).
    """
    for layer in layers:  # unsafe ids fail before the forward pass
        run.activation_path(model_id, layer)
    names = layer_aliases(layers, aliases)
    buffers = _run(model, batches, layers, pooling, n_clips, progress)
    check_finite(run, model_id, {layer: nonfinite_rows(buf.result())
                                 for layer, buf in buffers.items()})
    written: dict[str, Path] = {}
    for layer in layers:
        buf = buffers.pop(layer)
        written[layer] = write_layer(
            run, buf.result(), model_id=model_id, layer=layer, alias=names[layer],
            block=blocks[layer] if blocks is not None and layer in blocks else block_index(layer),
            pooling=buf.label, probe_sha256=probe_sha256, n_clips=n_clips,
            provenance=provenance)
        del buf
    return written


def nonfinite_rows(values: np.ndarray, limit: int = 5) -> list[int]:
    """The first ``limit`` clip rows of ``values`` [N, width] holding a NaN or infinity."""
    bad = ~np.isfinite(values)
    return np.unique(np.nonzero(bad)[0])[:limit].tolist() if bad.any() else []


def check_finite(run: Run, model_id: str, bad_rows: Mapping[str, Sequence[int]]) -> None:
    """Refuse a recording with non-finite activations, before any file is written.

    Args:
        bad_rows: ``{layer: clip rows with non-finite values}`` (empty lists: fine).

    Raises:
        RecordValidationError: naming the layer's file and the rows.
    """
    for layer, rows in bad_rows.items():
        if rows:
            raise RecordValidationError(
                str(run.activation_path(model_id, layer)), ActivationTable.record_name,
                "values", f"layer {layer!r}: non-finite activations on clip rows "
                f"{list(rows)[:5]}; nothing written")


def write_layer(
    run: Run,
    values: np.ndarray,
    *,
    model_id: str,
    layer: str,
    alias: str,
    block: int | None,
    pooling: str,
    probe_sha256: str,
    n_clips: int,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write one layer's ``ActivationTable`` file (atomic; same inputs, same bytes).

    Args:
        values: float32 [N, width] activations of the layer (clips in probe order x units).
        model_id, layer, alias, block, pooling, probe_sha256: the record fields.
        n_clips: N (stored in the file's provenance).
        provenance: extra JSON-serialisable provenance.

    Returns:
        The path written (:meth:`~and_toolkit.run.Run.activation_path`).
    """
    frame = activation_frame(values, model_id=model_id, layer=layer, alias=alias, block=block,
                             pooling=pooling, probe_sha256=probe_sha256)
    return run.write_activations(frame, **{"n_clips": n_clips, **dict(provenance or {})})


@dataclass(frozen=True)
class Partition:
    """Pooled activations of a contiguous run of clips, recorded by one worker.

    Attributes:
        values: ``{layer: float32 [rows, width]}`` in the order of the layers asked for.
        labels: ``{layer: pooling label}`` (``ActivationTable.pooling``).
        nonfinite: ``{layer: first rows (within the partition) with NaN / inf}``.
    """

    values: dict[str, np.ndarray]
    labels: dict[str, str]
    nonfinite: dict[str, list[int]]


def record_partition(
    model: nn.Module,
    batches: Iterable[Batch],
    layers: Sequence[str],
    pooling: Pooling | str,
    *,
    n_clips: int,
) -> Partition:
    """Record ``layers`` over one partition's batches (the unit of distributed recording).

    The same forward pass and hooks as :func:`record_to_run`; fed the same batches, it gives
    the same values bit for bit, so partitions cut at batch boundaries and concatenated in
    clip order give the local engine's files.

    Args:
        model, batches, layers, pooling: as :func:`record_activations`.
        n_clips: clips in this partition.

    Returns:
        The partition's :class:`Partition`.
    """
    buffers = _run(model, batches, layers, pooling, n_clips, False)
    values = {layer: buf.result() for layer, buf in buffers.items()}
    return Partition(values=values, labels={layer: buf.label for layer, buf in buffers.items()},
                     nonfinite={layer: nonfinite_rows(v) for layer, v in values.items()})
