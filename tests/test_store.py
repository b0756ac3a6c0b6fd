"""Records persist byte-identically, refuse bad input with clear errors, and write atomically."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from samples import sample_frame, sample_rows

from and_toolkit.errors import RecordValidationError
from and_toolkit.records import (
    ALL_RECORDS,
    ActivationTable,
    Caption,
    ConceptSet,
    Extremes,
    ProbeClip,
    Record,
    TrainingCurve,
)
from and_toolkit.store import read_records, record_of, write_records


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: r.record_name)
def test_round_trip_is_byte_identical(record: type[Record], tmp_path: Path) -> None:
    df = sample_frame(record)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    write_records(record, df, a, provenance={"stage": "test"})
    back = read_records(record, a)
    write_records(record, back.sample(fraction=1.0, shuffle=True, seed=1), b,
                  provenance={"stage": "test"})
    assert a.read_bytes() == b.read_bytes()
    assert back.equals(df.sort(list(record.primary_key)))
    assert record_of(a) is record


_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffd"),
                min_size=1, max_size=12)
_f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(
    st.tuples(_text, st.integers(0, 2**31 - 1), st.lists(_f32, min_size=3, max_size=3)),
    min_size=1, max_size=8, unique_by=lambda t: (t[0], t[1])))
def test_activation_round_trip_property(rows: list, tmp_path: Path) -> None:
    df = ActivationTable.frame([
        {"model": "m", "layer": layer, "unit": unit, "alias": "", "block": None,
         "pooling": "max", "probe_sha256": "h", "values": values}
        for layer, unit, values in rows
    ])
    path = tmp_path / "act.parquet"
    write_records(ActivationTable, df, path)
    back = read_records(ActivationTable, path)
    assert back.equals(df.sort(["model", "layer", "unit"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(_text, min_size=1, max_size=6, unique=True))
def test_caption_round_trip_property(texts: list[str], tmp_path: Path) -> None:
    df = Caption.frame([
        {"dataset": "d", "clip_id": t, "captioner": "c", "text": t + " é 🐕", "prompt": "",
         "provenance": "{}"} for t in texts])
    path = tmp_path / "cap.parquet"
    write_records(Caption, df, path)
    assert read_records(Caption, path).equals(df.sort(["dataset", "clip_id", "captioner"]))


def _act(**over: object) -> pl.DataFrame:
    rows = sample_rows(ActivationTable)
    rows[0] = {**rows[0], **over}
    return ActivationTable.frame(rows)


BAD_FRAMES = {
    "missing column": (ActivationTable, lambda: sample_frame(ActivationTable).drop("alias"),
                       "alias"),
    "extra column": (ActivationTable,
                     lambda: sample_frame(ActivationTable).with_columns(pl.lit(1).alias("zz")),
                     "zz"),
    "wrong dtype": (ActivationTable,
                    lambda: sample_frame(ActivationTable).with_columns(pl.col("unit").cast(pl.Utf8)),
                    "unit"),
    "null in non-null": (ProbeClip, lambda: sample_frame(ProbeClip).with_columns(
        pl.when(pl.col("index") == 1).then(None).otherwise(pl.col("label")).alias("label")),
        "label"),
    "NaN activation": (ActivationTable, lambda: _act(values=[0.0, math.nan, 1.0, 2.0]), "values"),
    "inf activation": (ActivationTable, lambda: _act(values=[0.0, math.inf, 1.0, 2.0]), "values"),
    "duplicate key": (ActivationTable, lambda: pl.concat([sample_frame(ActivationTable)] * 2),
                      "model,layer,unit"),
    "wrong array width": (ActivationTable, lambda: sample_frame(ActivationTable).with_columns(
        pl.col("values").cast(pl.List(pl.Float32))), "values"),
    "value outside Literal": (ActivationTable, lambda: _act(pooling="median"), "pooling"),
    "negative unit": (ActivationTable, lambda: _act(unit=-1), "unit"),
    "empty text": (Caption, lambda: Caption.frame(
        [{**sample_rows(Caption)[0], "text": ""}]), "text"),
    "non-UTF-8 text": (Caption, lambda: Caption.frame(
        [{**sample_rows(Caption)[0], "text": b"caf\xe9".decode("utf-8", "replace")}]), "text"),
    "null inside list": (Extremes, lambda: Extremes.frame(
        [{**sample_rows(Extremes)[0], "clip_ids": ["c1", None]}]), "clip_ids"),
    "empty frame where rows are required": (ConceptSet, lambda: ConceptSet.empty(), "*"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_bad_frames_are_refused_and_nothing_written(case: str, tmp_path: Path) -> None:
    record, make, field = BAD_FRAMES[case]
    path = tmp_path / "out.parquet"
    with pytest.raises(RecordValidationError) as info:
        write_records(record, make(), path, require_rows=True)
    assert info.value.field == field
    assert str(path) in str(info.value) and record.record_name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_bad_files_are_refused(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    write_records(ActivationTable, sample_frame(ActivationTable), good)
    cases: dict[str, Path] = {}
    cases["wrong record kind"] = good
    trunc = tmp_path / "trunc.parquet"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated file"] = trunc
    text = tmp_path / "notes.parquet"
    text.write_text("not parquet at all")
    cases["non-Parquet file"] = text
    plain = tmp_path / "plain.parquet"
    sample_frame(ActivationTable).write_parquet(plain)
    cases["no record metadata"] = plain
    future = tmp_path / "future.parquet"
    sample_frame(ActivationTable).write_parquet(
        future, metadata={"and_toolkit.record": "ActivationTable",
                          "and_toolkit.schema_version": "99"})
    cases["unknown schema version"] = future
    cases["missing file"] = tmp_path / "nope.parquet"
    for case, path in cases.items():
        record = Caption if case == "wrong record kind" else ActivationTable
        with pytest.raises(RecordValidationError, match=str(path)) as info:
            read_records(record, path)
        assert info.value.record in (record.record_name, "ActivationTable"), case
    tampered = tmp_path / "tampered.parquet"
    sample_frame(ActivationTable).with_columns(pl.col("values").cast(pl.List(pl.Float32))).pipe(
        lambda d: d.with_columns(pl.when(pl.col("unit") == 0).then([1.0, float("nan"), 1.0, 1.0])
                                 .otherwise(pl.col("values")).cast(pl.Array(pl.Float32, 4))
                                 .alias("values"))
    ).write_parquet(tampered, metadata={"and_toolkit.record": "ActivationTable",
                                        "and_toolkit.schema_version": "1"})
    with pytest.raises(RecordValidationError, match="NaN") as info:
        read_records(ActivationTable, tampered)
    assert info.value.field == "values"


WRITER = textwrap.dedent("""
    import sys, time, polars as pl
    import and_toolkit.atomic as atomic
    from and_toolkit.records import ActivationTable
    from and_toolkit.store import write_records
    real = atomic.atomic_write_bytes
    def slow_write(tmp_write):
        def inner(tmp):
            tmp_write(tmp)
            print("WRITTEN", flush=True)
            time.sleep(60)
        return inner
    import and_toolkit.store as store
    store.atomic_write_bytes = lambda path, w: real(path, slow_write(w))
    rows = [dict(model="m", layer="l", unit=u, alias="", block=None, pooling="mean",
                 probe_sha256="new", values=[0.5] * 1000) for u in range(2000)]
    write_records(ActivationTable, ActivationTable.frame(rows), sys.argv[1])
""")


def test_sigkill_mid_write_keeps_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "act.parquet"
    write_records(ActivationTable, sample_frame(ActivationTable), path)
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "WRITTEN"  # temp file complete, not yet renamed
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert path.read_bytes() == before
    read_records(ActivationTable, path)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "act.parquet"]
    assert all(name.startswith(".act.parquet.") and name.endswith(".tmp") for name in leftovers)
    # readers never see temp files: scanning the directory yields only the real file
    from and_toolkit.store import scan_records
    assert scan_records(ActivationTable, tmp_path).collect().height == 3


def test_read_during_replacement_sees_one_file(tmp_path: Path) -> None:
    """While another thread keeps replacing a record file (``write_records`` renames a finished
    temporary file over it), every ``read_records`` gets one whole file, the old or the new.
    Reading by path, polars opened the path more than once and mixed two files' footer and
    pages ("The page header reported the wrong page size"), as the explorer's concurrent rating
    posts met it."""
    import threading
    import time

    path = tmp_path / "curve.parquet"
    rows = sample_rows(TrainingCurve)
    write_records(TrainingCurve, TrainingCurve.frame(rows), path)
    stop = threading.Event()
    written = [1]

    def writer() -> None:
        n = 1
        while not stop.is_set():
            n = n % 40 + 1  # files of 1..40 copies of the rows, each with its own page sizes
            many = [{**r, "epoch": i * len(rows) + j + 1} for i in range(n)
                    for j, r in enumerate(rows)]
            write_records(TrainingCurve, TrainingCurve.frame(many), path)
            written[0] += 1

    thread = threading.Thread(target=writer)
    thread.start()
    reads, errors = 0, []
    try:
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                df = read_records(TrainingCurve, path)
                assert df.height % len(rows) == 0
                reads += 1
            except RecordValidationError as exc:
                errors.append(str(exc))
    finally:
        stop.set()
        thread.join()
    assert written[0] > 10 and reads > 10, (written, reads)
    assert errors == []
