"""Record the probe in clip partitions to scratch files; assemble a layer's blocks from them.

The distributed form of :func:`~and_toolkit.recording.record.record_to_run` (the Ray engine's
record actors, :mod:`and_toolkit.pipeline.ray_engine`). Each worker records its clips
``[a, b)`` with the same forward pass and hooks into its own scratch directory, in the local
engine's scratch format: per layer ``<i>/`` (i = position in the layers asked for), one raw
float32 file ``<block>.f32`` per block of ``block_units`` units, rows = the partition's clips
in order. Pass ``block_units = units_per_chunk(N)`` of the **whole** probe: then block ``k`` of
a layer over the whole probe is the partitions' ``<i>/<k>.f32`` concatenated in clip order,
which is exactly the local engine's scratch block. :func:`layer_blocks` yields those blocks
and :func:`~and_toolkit.recording.write.write_layer_blocks` writes them as the local engine
does (same row groups, same bytes), in whichever process: no process ever holds more than one
block ``[N, block_units]`` (4 MiB of values), whatever N and the layer's width.

The scratch directories must be readable by the process that writes the layer (one machine, or
the run directory on storage every node mounts, as for the other distributed stages).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from and_toolkit.recording.hooks import Pooling
from and_toolkit.recording.record import Batch, FramedBatch, _run

__all__ = ["ScratchPartition", "layer_blocks", "record_partition"]


@dataclass(frozen=True)
class ScratchPartition:
    """What a worker reports after recording a partition to scratch: metadata only, no values.

    Attributes:
        directory: the partition's scratch directory.
        start: global row of its first clip.
        rows: clips recorded.
        labels: ``{layer: pooling label}`` (``ActivationTable.pooling``).
        widths: ``{layer: units}``.
        nonfinite: ``{layer: global clip rows with NaN / inf (at most 5)}``.
    """

    directory: str
    start: int
    rows: int
    labels: dict[str, str]
    widths: dict[str, int]
    nonfinite: dict[str, list[int]]


def record_partition(
    model: nn.Module,
    batches: Iterable[Batch | FramedBatch],
    layers: Sequence[str],
    pooling: Pooling | str,
    *,
    start: int,
    n_clips: int,
    scratch: Path,
    block_units: int,
) -> ScratchPartition:
    """Record ``layers`` over one partition's batches into ``scratch`` (a new directory).

    Args:
        model, batches, layers, pooling: as :func:`~and_toolkit.recording.record.
            record_activations` (``batches`` = the local engine's batches of these clips).
        start: global row of the partition's first clip (for error messages).
        n_clips: clips in this partition (checked).
        scratch: directory to create and fill.
        block_units: units per scratch block: ``units_per_chunk`` of the whole probe's N.

    Raises:
        ValueError: see :func:`~and_toolkit.recording.record.record_activations`.
    """
    buffers = _run(model, batches, layers, pooling, n_clips, False, scratch=scratch,
                   block_units=block_units)
    for buf in buffers.values():
        if buf.filled != n_clips:
            raise ValueError(f"batches: expected n_clips={n_clips} clips, got {buf.filled}")
    return ScratchPartition(
        directory=str(scratch), start=start, rows=n_clips,
        labels={layer: buf.label for layer, buf in buffers.items()},
        widths={layer: buf.width for layer, buf in buffers.items()},
        nonfinite={layer: sorted({start + r for r in buf.bad_rows})[:5]
                   for layer, buf in buffers.items()})


def layer_blocks(parts: Sequence[ScratchPartition], index: int, width: int, block_units: int
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """``(first unit, float32 [N, units])`` of one layer over every partition, in unit order.

    Args:
        parts: the partitions in clip order, covering the probe.
        index: the layer's position in the layers the partitions were recorded with.
        width: the layer's units.
        block_units: the partitions' units per block.
    """
    for block, u0 in enumerate(range(0, width, block_units)):
        pieces = [np.fromfile(Path(p.directory) / str(index) / f"{block}.f32",
                              dtype=np.float32).reshape(p.rows, -1) for p in parts]
        yield u0, np.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
