"""Parquet persistence of record frames: the only place records touch the disk.

Files carry the record name, schema version and provenance in their key-value metadata. Writes
are validated, sorted by primary key (deterministic bytes), zstd-compressed and atomic (temp file
in the same directory, fsync, rename): a failed or killed write never leaves a partial file and
never damages the previous version. Reads check the metadata and validate the frame.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.errors import DataError, RecordValidationError
from and_toolkit.records.base import Record
from and_toolkit.records.models import RECORDS_BY_NAME

META_RECORD = "and_toolkit.record"
META_VERSION = "and_toolkit.schema_version"
META_PROVENANCE = "and_toolkit.provenance"


def sort_by_key(record: type[Record], df: pl.DataFrame) -> pl.DataFrame:
    """Sort a frame by the record's primary key (stable, nulls last)."""
    if not record.primary_key or df.height == 0:
        return df
    return df.sort(list(record.primary_key), maintain_order=True, nulls_last=True)


def write_records(
    record: type[Record],
    df: pl.DataFrame,
    path: str | Path,
    *,
    provenance: Mapping[str, Any] | None = None,
    require_rows: bool = False,
) -> Path:
    """Validate ``df`` as ``record`` rows and write it to ``path`` atomically.

    Args:
        record: the record model class.
        df: frame with exactly the record's columns and dtypes.
        path: destination ``.parquet`` path.
        provenance: JSON-serialisable description of how the rows were made.
        require_rows: refuse an empty frame.

    Returns:
        The path written.

    Raises:
        RecordValidationError: the frame does not conform; nothing is written.
    """
    path = Path(path)
    record.validate_frame(df, str(path), require_rows=require_rows)
    df = sort_by_key(record, df)
    metadata = {
        META_RECORD: record.record_name,
        META_VERSION: str(record.schema_version),
        META_PROVENANCE: json.dumps(dict(provenance or {}), sort_keys=True, default=str),
    }
    atomic_write_bytes(
        path,
        lambda tmp: df.write_parquet(
            tmp, compression="zstd", compression_level=3, statistics=True, metadata=metadata
        ),
    )
    return path


def write_record_chunks(
    record: type[Record],
    chunks: Iterable[pl.DataFrame],
    path: str | Path,
    *,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write record rows arriving in chunks (one Parquet row group each), atomically.

    Memory is one chunk at a time (plus its Arrow copy), whatever the file's size. Each chunk
    is validated and sorted by primary key; the caller gives chunks in key order (checked: the
    first key of a chunk must follow the last key of the one before).

    Raises:
        RecordValidationError: a chunk does not conform, chunks out of key order, or no chunk;
            nothing is written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    metadata = {
        META_RECORD: record.record_name,
        META_VERSION: str(record.schema_version),
        META_PROVENANCE: json.dumps(dict(provenance or {}), sort_keys=True, default=str),
    }
    key = list(record.primary_key)

    def write(tmp: Path) -> None:
        writer: Any = None
        last: tuple[Any, ...] | None = None
        try:
            for df in chunks:
                record.validate_frame(df, str(path))
                if df.height == 0:
                    continue
                df = sort_by_key(record, df)
                first = df.select(key).row(0)
                if last is not None and key and not first > last:
                    raise RecordValidationError(str(path), record.record_name, ",".join(key),
                                                f"chunk starting at {first} follows {last}")
                last = df.select(key).row(-1)
                table = df.to_arrow()
                if writer is None:
                    schema = table.schema.with_metadata(metadata)
                    writer = pq.ParquetWriter(tmp, schema, compression="zstd",
                                              compression_level=3)
                writer.write_table(pa.Table.from_batches(table.to_batches(), schema=schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise RecordValidationError(str(path), record.record_name, "*", "no rows to write")

    atomic_write_bytes(path, write)
    return path


def read_metadata(path: str | Path, record: type[Record] | None = None) -> dict[str, str]:
    """Read and check the key-value metadata of a record file.

    Args:
        path: a ``.parquet`` file written by :func:`write_records`.
        record: expected record class; None accepts any known record.

    Returns:
        The file's key-value metadata.

    Raises:
        RecordValidationError: missing / non-Parquet / truncated file, another record kind,
            or an unknown schema version.
    """
    path = Path(path)
    name = record.record_name if record else "?"
    if not path.is_file():
        raise RecordValidationError(str(path), name, "*", "file does not exist")
    try:
        meta = pl.read_parquet_metadata(path)
    except Exception as exc:  # polars raises several kinds for corrupt files
        raise RecordValidationError(
            str(path), name, "*", f"not a readable Parquet file (truncated or corrupt?): {exc}"
        ) from exc
    found = meta.get(META_RECORD)
    if found is None:
        raise RecordValidationError(str(path), name, "*", "no and-toolkit record metadata")
    if found not in RECORDS_BY_NAME:
        raise RecordValidationError(str(path), name, "*", f"unknown record kind {found!r}")
    if record is not None and found != record.record_name:
        raise RecordValidationError(
            str(path), name, "*", f"file holds {found} records, not {record.record_name}"
        )
    version = meta.get(META_VERSION, "")
    expected = RECORDS_BY_NAME[found].schema_version
    if version != str(expected):
        raise RecordValidationError(
            str(path), found, "*",
            f"schema version {version!r} is not the supported version {expected}",
        )
    return meta


def record_of(path: str | Path) -> type[Record]:
    """The record class a file holds, from its metadata."""
    return RECORDS_BY_NAME[read_metadata(path)[META_RECORD]]


def provenance_of(path: str | Path) -> dict[str, Any]:
    """The provenance dict stored in a record file."""
    return dict(json.loads(read_metadata(path).get(META_PROVENANCE, "{}")))


def read_records(
    record: type[Record], path: str | Path, *, require_rows: bool = False
) -> pl.DataFrame:
    """Read and validate a record file.

    The rows are read through one open file handle: a file that another thread or process
    replaces meanwhile (every write here is a rename) is read whole, old or new. Reading by path,
    polars may open the path more than once and combine the footer of one file with the pages
    of the next (``tests/test_store.py::test_read_during_replacement_sees_one_file``).

    Raises:
        RecordValidationError: see :func:`read_metadata`, or a frame that fails validation.
    """
    read_metadata(path, record)
    try:
        with open(path, "rb") as fh:
            df = pl.read_parquet(fh)
    except Exception as exc:
        raise RecordValidationError(
            str(path), record.record_name, "*", f"cannot read data pages: {exc}"
        ) from exc
    return record.validate_frame(df, str(path), require_rows=require_rows)


def scan_records(record: type[Record], paths: str | Path | list[Path]) -> pl.LazyFrame:
    """Lazily scan one or many record files (metadata of each is checked, rows are not).

    Args:
        record: the record class every file must hold.
        paths: a file, a list of files, or a directory scanned recursively for ``*.parquet``.
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        files = sorted(Path(paths).rglob("*.parquet"))
    elif isinstance(paths, (str, Path)):
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    files = [f for f in files if not f.name.startswith(".")]
    if not files:
        return record.empty().lazy() if not _has_vector(record) else pl.LazyFrame()
    for f in files:
        read_metadata(f, record)
    return pl.scan_parquet(files, hive_partitioning=False)


def read_table(path: str | Path) -> pl.DataFrame:
    """Read a plain Parquet table that is not a record file (e.g. a user's caption file).

    Raises:
        DataError: the file is missing or not readable Parquet (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for corrupt files
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None


def frame_bytes(record: type[Record], df: pl.DataFrame) -> bytes:
    """A validated record frame as in-memory Parquet bytes (for the content cache)."""
    record.validate_frame(df, source=f"{record.record_name} frame")
    buf = io.BytesIO()
    df.write_parquet(buf)
    return buf.getvalue()


def bytes_frame(record: type[Record], raw: bytes, source: str) -> pl.DataFrame:
    """The record frame of :func:`frame_bytes`, validated again (``source`` names it in errors)."""
    return record.validate_frame(pl.read_parquet(io.BytesIO(raw)), source=source)


def vector_width(record: type[Record], path: str | Path, field: str) -> int | None:
    """The fixed width of an Array column of a record file (None: not a fixed-width array).

    Raises:
        RecordValidationError: see :func:`read_metadata`, or no such column.
    """
    schema = scan_records(record, path).collect_schema()
    if field not in schema:
        raise RecordValidationError(str(path), record.record_name, field, "no such column")
    dtype = schema[field]
    return int(dtype.size) if isinstance(dtype, pl.Array) else None


def _has_vector(record: type[Record]) -> bool:
    return any(s.fixed_width for s in record.field_specs())
