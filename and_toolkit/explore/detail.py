"""Everything the neuron page and ``GET /api/neurons/{model}/{layer}/{unit}`` show of one neuron.

Pure assembly over :class:`and_toolkit.explore.data.Tables`: the top-K and bottom-K clips
(activation, class label, caption, audio and spectrogram URLs), S_h and S_l, Module B's
calibration (kept points; each dropped point with the S_l point it matched and the cosine that
dropped it, the threshold t and the rule), Module C's open concepts with their verdicts, and
Module A's closed concepts per method x similarity with their scores (every rank the run holds).
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

import polars as pl

from and_toolkit.explore.data import RATED_METHODS, Tables


def _finite(x: float | None) -> float | None:
    """JSON has no NaN / inf: those become null."""
    return None if x is None or not math.isfinite(x) else float(x)


def _clips(t: Tables, ids: list[str] | None, values: list[float] | None) -> list[dict[str, Any]]:
    out = []
    for clip_id, value in zip(ids or [], values or [], strict=True):
        row = t.probe.filter(pl.col("clip_id") == clip_id)
        out.append({"clip_id": clip_id, "activation": _finite(value),
                    "label": row["label"][0] if row.height else None,
                    "seconds": (row["n_samples"][0] / row["sample_rate"][0]) if row.height
                    else None,
                    "caption": t.captions.get(clip_id),
                    "audio_url": f"/clips/{quote(clip_id, safe='')}",
                    "spectrogram_url": f"/clips/{quote(clip_id, safe='')}/spectrogram.png"})
    return out


def _calibration(rows: pl.DataFrame) -> dict[str, Any] | None:
    if rows.height == 0:
        return None
    r = rows.row(0, named=True)
    dropped = [{"point": p, "matched": m, "cos": _finite(c)} for p, m, c in
               zip(r["dropped"], r["dropped_match"], r["dropped_cos"], strict=True)]
    return {"kept": r["kept"], "dropped": dropped, "threshold": r["threshold"],
            "rule": r["rule"], "encoder": r["encoder"]}


def _closed(rows: pl.DataFrame) -> list[dict[str, Any]]:
    out = []
    closed = rows.filter(pl.col("kind") == "closed").sort("method", "similarity", "rank")
    for (method, similarity), g in closed.group_by(["method", "similarity"], maintain_order=True):
        out.append({"method": method, "similarity": similarity,
                    "concepts": [{"rank": c["rank"], "concept": c["concept"],
                                  "score": _finite(c["score"])}
                                 for c in g.iter_rows(named=True)]})
    return out


def _open(rows: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    opened = rows.filter(pl.col("kind") == "open").sort("method", "rank", "concept")
    for (method,), g in opened.group_by(["method"], maintain_order=True):
        out[str(method)] = [{"rank": c["rank"], "concept": c["concept"], "pos": c["pos"],
                             "verdict": c["verdict"]} for c in g.iter_rows(named=True)]
    return out


def neuron_detail(t: Tables, model: str, layer: str, unit: int) -> dict[str, Any] | None:
    """The neuron's page data (JSON-ready), or None when the run has no such neuron."""
    v = t.neuron(model, layer, unit)
    if v is None:
        return None
    mine = ((pl.col("model") == model) & (pl.col("layer") == layer) & (pl.col("unit") == unit))
    concepts = t.concepts.filter(mine)
    return {
        "model": model, "layer": layer, "unit": unit, "alias": v.get("alias"),
        "block": v.get("block"), "pooling": v.get("pooling"),
        "top": _clips(t, v.get("top_clips"), v.get("top_values")),
        "bottom": _clips(t, v.get("bottom_clips"), v.get("bottom_values")),
        "summary_high": v.get("summary_high") or [],
        "summary_low": v.get("summary_low") or [],
        "calibration": _calibration(t.calibrated.filter(mine)),
        "open_concepts": _open(concepts),
        "closed_concepts": _closed(concepts),
        "descriptions": {m: t.description(model, layer, unit, m) for m in RATED_METHODS},
    }
