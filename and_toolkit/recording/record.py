"""Record pooled activations of any torch module in one pass, all layers at once.

:func:`record_activations` returns ``{layer: float32 [N, width]}``; :func:`record_to_run` writes
one ``ActivationTable`` file per layer through :func:`and_toolkit.recording.write.
write_layer_blocks`; :mod:`and_toolkit.recording.partition` records one partition of the probe
to scratch files the same way (a Ray record actor's work) and assembles a layer from them.

Memory: forward hooks pool each recorded output to ``[B, width]`` as the batch runs.
:func:`record_activations` copies it into a float32 ``[N, width]`` array per layer (preallocated
when ``n_clips`` is known; without it the per-batch pieces are concatenated at the end).
:func:`record_to_run` keeps no activation matrix: each batch's pooled rows are appended to
per-layer scratch files on disk (in a temporary directory inside the run), one file per block of
:func:`units_per_chunk` units, so after the pass a block is read back as ``[N, units]``,
transposed and written as one Parquet row group of neuron-major rows. Memory beyond the forward
pass is one batch of pooled outputs per layer plus one block (4 MiB of values), whatever N.

The model is put in eval mode for the pass (dropout off) and its train/eval flags are restored
afterwards; the forward pass runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
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
    time_dim,
)
from and_toolkit.recording.write import activation_frame, write_layer_blocks
from and_toolkit.records import ActivationTable
from and_toolkit.run import Run

__all__ = [
    "Batch", "FramedBatch", "activation_frame", "probe_sha256", "record_activations",
    "record_to_run", "units_per_chunk", "write_layer_blocks",
]

Batch = torch.Tensor | Mapping[str, torch.Tensor]
"""One model input: a tensor passed positionally, or a dict of tensors passed as keywords."""
FramedBatch = tuple[Batch, Mapping[int, Any]]
"""A model input with its valid frames: ``(batch, {T: int [B]})``. An output whose time axis
(:func:`~and_toolkit.recording.hooks.time_dim`) has padded length T is pooled over the first
``frames[T][b]`` frames of clip b only (wav2vec2 / HuBERT padding, Whisper's 30 s window);
outputs of other lengths over every frame."""

def probe_sha256(clip_ids: Sequence[str]) -> str:
    """SHA-256 of the ordered clip ids (JSON array, UTF-8): identifies a probe set and its order.

    Args:
        clip_ids: clip ids in probe order.

    Returns:
        64-character hex digest.
    """
    return hashlib.sha256(json.dumps(list(clip_ids), ensure_ascii=False).encode()).hexdigest()


CHUNK_BYTES = 4 << 20
"""Bytes of one block of units read back from scratch when writing (N x units x 4): small
enough that its copies while writing (transpose, frame, Arrow) stay a few tens of MiB."""


def units_per_chunk(n_clips: int) -> int:
    """Units per scratch block / Parquet row group for N clips: ``CHUNK_BYTES`` worth of
    float32 values, between 16 and 1024 units."""
    return int(max(16, min(1024, CHUNK_BYTES // (4 * max(n_clips, 1)))))


@dataclass
class _LayerBuffer:
    """Pooled outputs of one layer, filled batch by batch: in memory, or appended to scratch
    files (``scratch``: one ``<block>.f32`` file per block of ``block_units`` units)."""

    channels_first: bool
    n_clips: int | None
    array: np.ndarray | None = None
    chunks: list[np.ndarray] = field(default_factory=list)
    filled: int = 0
    calls: int = 0
    label: str = ""
    scratch: Path | None = None
    block_units: int = 0
    width: int = 0
    bad_rows: list[int] = field(default_factory=list)

    def _spill(self, pooled: np.ndarray) -> None:
        if self.width == 0:
            self.width = int(pooled.shape[1])
        elif pooled.shape[1] != self.width:
            raise ValueError(f"output width changed from {self.width} to {pooled.shape[1]}")
        if self.n_clips is not None and self.filled + pooled.shape[0] > self.n_clips:
            raise ValueError(
                f"batches: more than n_clips={self.n_clips} clips were fed to the model")
        finite = np.isfinite(pooled).all(axis=1)
        if not finite.all() and len(self.bad_rows) < 5:
            self.bad_rows += (np.nonzero(~finite)[0] + self.filled).tolist()[:5]
        assert self.scratch is not None
        for block, u0 in enumerate(range(0, self.width, self.block_units)):
            with open(self.scratch / f"{block}.f32", "ab") as fh:
                fh.write(np.ascontiguousarray(pooled[:, u0:u0 + self.block_units]).tobytes())

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first unit, float32 [N, units])`` of each scratch block, in unit order."""
        assert self.scratch is not None
        if self.filled != self.n_clips:
            raise ValueError(f"batches: expected n_clips={self.n_clips} clips, got {self.filled}")
        for block, u0 in enumerate(range(0, self.width, self.block_units)):
            values = np.fromfile(self.scratch / f"{block}.f32", dtype=np.float32)
            yield u0, values.reshape(self.filled, -1)

    def add(self, pooled: np.ndarray) -> None:
        b = pooled.shape[0]
        if self.scratch is not None:
            self._spill(pooled)
        elif self.n_clips is None:
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


def _make_hook(layer: str, buf: _LayerBuffer, pooling: Pooling,
               frames: dict[int, torch.Tensor]) -> Callable[..., None]:
    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"layer {layer!r}: output is {type(output).__name__}, not a tensor")
        if not buf.label:
            buf.label = pooling_label(out.ndim, pooling, buf.channels_first)
        dim = time_dim(out.ndim, buf.channels_first)
        valid = frames.get(out.shape[dim]) if dim is not None and frames else None
        pooled = pool_output(out, pooling, buf.channels_first, valid)
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
    batches: Iterable[Batch | FramedBatch],
    layers: Sequence[str],
    pooling: Pooling | str,
    n_clips: int | None,
    progress: bool,
    scratch: Path | None = None,
    block_units: int | None = None,
) -> dict[str, _LayerBuffer]:
    """One forward pass over ``batches`` with hooks on ``layers``; returns the filled buffers
    (spilled to ``scratch/<i>/`` for the i-th of ``layers`` when ``scratch`` is given; needs
    ``n_clips``; blocks of ``block_units`` units, default :func:`units_per_chunk` of
    ``n_clips``)."""
    pool = Pooling.parse(pooling)
    if not layers:
        raise ValueError("layers: at least one layer is required")
    if n_clips is not None and n_clips <= 0:
        raise ValueError(f"n_clips: must be positive, got {n_clips}")
    modules = resolve_modules(model, layers)
    buffers = {name: _LayerBuffer(is_channels_first(m), n_clips) for name, m in modules.items()}
    if scratch is not None:
        if n_clips is None:
            raise ValueError("n_clips: required when recording to scratch files")
        for i, buf in enumerate(buffers.values()):
            buf.scratch = scratch / str(i)
            buf.scratch.mkdir(parents=True)
            buf.block_units = block_units or units_per_chunk(n_clips)
    frames: dict[int, torch.Tensor] = {}  # valid frames of the batch running, by padded length
    handles = [m.register_forward_hook(_make_hook(name, buffers[name], pool, frames))
               for name, m in modules.items()]
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    iterator: Iterable[Batch | FramedBatch] = batches
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(batches, desc="record", unit="batch", file=sys.stderr, leave=False)
    try:
        model.eval()
        with torch.inference_mode():
            for i, batch in enumerate(iterator):
                frames.clear()
                if isinstance(batch, tuple):
                    batch, valid = batch
                    frames.update({int(t): torch.as_tensor(v, dtype=torch.long)
                                   for t, v in valid.items()})
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
    batches: Iterable[Batch | FramedBatch],
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


def record_to_run(
    model: nn.Module,
    batches: Iterable[Batch | FramedBatch],
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
        n_clips: number of clips N (checked; pooled outputs go to scratch files, so memory does
            not grow with N).
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
    run.root.mkdir(parents=True, exist_ok=True)
    for stale in run.root.glob(".record-*"):  # scratch of a killed pass
        shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=run.root, prefix=".record-") as tmp:
        buffers = _run(model, batches, layers, pooling, n_clips, progress, scratch=Path(tmp))
        for layer, buf in buffers.items():  # check everything before writing anything
            if buf.filled != n_clips:
                raise ValueError(f"batches: expected n_clips={n_clips} clips, got {buf.filled}")
            if buf.bad_rows:
                raise RecordValidationError(
                    str(run.activation_path(model_id, layer)), ActivationTable.record_name,
                    "values", f"layer {layer!r}: non-finite activations on clip rows "
                    f"{sorted(set(buf.bad_rows))[:5]}; nothing written",
                )
        written: dict[str, Path] = {}
        for layer in layers:
            buf = buffers[layer]
            written[layer] = write_layer_blocks(
                run, buf.blocks(), model_id=model_id, layer=layer, alias=names[layer],
                block=blocks.get(layer, block_index(layer)) if blocks else block_index(layer),
                pooling=buf.label, probe_sha256=probe_sha256, n_clips=n_clips,
                provenance=provenance)
    return written
