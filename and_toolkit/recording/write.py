"""Write recorded activations: one layer's ``ActivationTable`` file from blocks of units.

Both engines write through :func:`write_layer_blocks` (the local engine from the scratch blocks
of :func:`~and_toolkit.recording.record.record_to_run`, the Ray engine's actors from the
partitions' scratch blocks, :func:`~and_toolkit.recording.partition.layer_blocks`), one Parquet
row group per block of :func:`~and_toolkit.recording.record.units_per_chunk` units, so they
write the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from and_toolkit.errors import RecordValidationError
from and_toolkit.records import ActivationTable
from and_toolkit.run import Run

__all__ = ["activation_frame", "check_finite", "write_layer_blocks"]


def activation_frame(
    values: np.ndarray,
    *,
    first_unit: int = 0,
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
        first_unit: unit number of the first column (a block of a wider layer).
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
        "unit": pl.Series(np.arange(first_unit, first_unit + width, dtype=np.int32)),
        "alias": pl.Series([alias] * width, dtype=pl.String),
        "block": pl.Series([block] * width, dtype=pl.Int32),
        "pooling": pl.Series([pooling] * width, dtype=pl.String),
        "probe_sha256": pl.Series([probe_sha256] * width, dtype=pl.String),
        "values": pl.Series(vec, dtype=pl.Array(pl.Float32, n)),
    }, schema=schema)


def write_layer_blocks(
    run: Run,
    blocks: Iterable[tuple[int, np.ndarray]],
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
    """Write one layer's ``ActivationTable`` file from unit blocks, one Parquet row group each
    (atomic; memory: one block). The local and the Ray engine both write through here, cutting
    a layer into blocks of :func:`units_per_chunk` units, so their files are byte-identical.

    Args:
        blocks: ``(first unit, float32 [N, units])`` in unit order, covering the layer.
        model_id, layer, alias, block, pooling, probe_sha256: the record fields.
        n_clips: N (stored in the file's provenance).
        provenance: extra JSON-serialisable provenance.

    Returns:
        The path written (:meth:`~and_toolkit.run.Run.activation_path`).
    """
    frames = (activation_frame(values, first_unit=u0, model_id=model_id, layer=layer,
                               alias=alias, block=block, pooling=pooling,
                               probe_sha256=probe_sha256)
              for u0, values in blocks)
    return run.write_activation_chunks(model_id, layer, frames,
                                       **{"n_clips": n_clips, **dict(provenance or {})})


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
