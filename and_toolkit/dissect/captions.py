"""Caption records: import from CSV / JSONL / Parquet, and build from in-memory texts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.errors import DataError
from and_toolkit.records.models import Caption
from and_toolkit.store import read_table


def read_caption_file(
    path: str | Path, id_column: str = "filename", text_column: str = "caption"
) -> dict[str, str]:
    """Read ``{clip_id: caption}`` from a CSV, JSONL, JSON object or Parquet file.

    The clip id is the file stem of ``id_column`` (``1-100032-A-0.wav`` -> ``1-100032-A-0``).

    Raises:
        DataError: unreadable file, non-UTF-8 bytes, missing columns, duplicate or empty ids,
            naming the file and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: caption file does not exist")
    try:
        if path.suffix == ".csv":
            df = pl.read_csv(path, infer_schema_length=0, encoding="utf8")
        elif path.suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(path)
        elif path.suffix == ".json":
            obj = json.loads(path.read_text("utf-8"))
            df = pl.DataFrame({id_column: list(obj), text_column: list(obj.values())})
        elif path.suffix == ".parquet":
            df = read_table(path)
        else:
            raise DataError(f"{path}: unsupported caption format {path.suffix!r}")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 ({exc})") from None
    except (pl.exceptions.PolarsError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot parse captions: {exc}") from None
    for col in (id_column, text_column):
        if col not in df.columns:
            raise DataError(f"{path}: column {col!r} missing (has {df.columns})")
    ids = [Path(str(v)).stem for v in df[id_column].to_list()]
    texts = df[text_column].to_list()
    out: dict[str, str] = {}
    for row, (clip, text) in enumerate(zip(ids, texts, strict=True), start=1):
        if not clip:
            raise DataError(f"{path}: row {row}: empty {id_column!r}")
        if clip in out:
            raise DataError(f"{path}: row {row}: duplicate clip {clip!r} in {id_column!r}")
        if text is None or not str(text).strip():
            raise DataError(f"{path}: row {row}: empty {text_column!r} for clip {clip!r}")
        if "\ufffd" in str(text):
            raise DataError(f"{path}: row {row}: {text_column!r} is not valid UTF-8")
        out[clip] = str(text)
    return out


def caption_frame(
    probe: pl.DataFrame,
    texts: Mapping[str, str],
    captioner: str,
    *,
    prompt: str = "",
    provenance: Mapping[str, Any] | None = None,
    source: str = "<captions>",
) -> pl.DataFrame:
    """Caption records for every probe clip, in probe order.

    Args:
        probe: ProbeClip frame (dataset, clip_id, index ...).
        texts: ``{clip_id: caption}``; must cover exactly the probe's clips.
        captioner: captioner id stored with every row.
        prompt: the captioner prompt ('' if unknown).
        provenance: stored as JSON in every row.
        source: name of the captions' origin for error messages.

    Raises:
        DataError: clips without a caption, or captions for clips not in the probe set.
    """
    clips = probe.sort("index")["clip_id"].to_list()
    missing = [c for c in clips if c not in texts]
    unknown = sorted(set(texts) - set(clips))
    if missing:
        raise DataError(f"{source}: {len(missing)} probe clip(s) have no caption, "
                        f"e.g. {missing[:3]}")
    if unknown:
        raise DataError(f"{source}: {len(unknown)} caption(s) for clips not in the probe set, "
                        f"e.g. {unknown[:3]}")
    dataset = probe["dataset"][0] if probe.height else ""
    prov = json.dumps(dict(provenance or {}), sort_keys=True, default=str)
    return Caption.frame(
        {"dataset": dataset, "clip_id": c, "captioner": captioner, "text": texts[c],
         "prompt": prompt, "provenance": prov}
        for c in clips
    )


def captions_by_clip(captions: pl.DataFrame) -> dict[str, str]:
    """``{clip_id: text}`` of a Caption frame holding one captioner."""
    if captions["captioner"].n_unique() > 1:
        raise ValueError(f"captions hold several captioners: {captions['captioner'].unique()}")
    return dict(zip(captions["clip_id"].to_list(), captions["text"].to_list(), strict=True))


DESCRIPTOR_ID = "descriptors-v1"
"""Version id of the acoustic-descriptor sentence appended to captions
(:mod:`and_toolkit.dissect.descriptors`)."""


def active_captioner(captioner_id: str, descriptors: bool) -> str:
    """The captioner id the dissection reads: ``<base>+descriptors-v1`` when descriptor
    sentences are appended, else the base captioner."""
    return f"{captioner_id}+{DESCRIPTOR_ID}" if descriptors else captioner_id


def caption_variants(captioner_id: str, descriptors: bool) -> dict[str, str]:
    """The caption variants the dissection runs on (``records.CAPTION_VARIANTS``) and the
    captioner id each reads: ``{"": <base>}`` (the captions alone, the paper's setting, always
    the primary result), plus ``{"descriptors": "<base>+descriptors-v1"}`` when descriptor
    sentences are on."""
    out = {"": captioner_id}
    if descriptors:
        out["descriptors"] = active_captioner(captioner_id, True)
    return out
