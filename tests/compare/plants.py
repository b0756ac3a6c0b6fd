"""Helpers of the diff tests: a tiny run (the e2e pattern) and planted changes.

Every plant rewrites records through ``Run.write`` / ``store.write_records`` (validated) and
returns what it changed, so a test can look for the neuron / key and before -> after.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.cache import Cache
from and_toolkit.config import parse_config
from and_toolkit.pipeline import run_pipeline
from and_toolkit.records import CalibratedSummary, ConceptSet, ProbeClip, ResultRow, Summary
from and_toolkit.run import Run

KEY = ["model", "layer", "unit"]

TINY: dict[str, Any] = {
    "name": "tiny-diff",
    "probe": {"kind": "synthetic", "per_class": 4},
    "features": {"num_mel_bins": 32, "max_length": 64},
    "targets": [
        {"id": "cnn", "arch": "cnn", "epochs": 1,
         "overrides": {"batch_size": 8, "schedule": "cosine", "cnn": {"channels": [4, 8]}}},
    ],
    "record": {"k": 3},
    "captions": {"source": "synthetic", "captioner_id": "synthetic-params"},
    "closed": {"methods": ["DB"], "encoder": "hashing"},
    "calibrate": {"encoder": "hashing"},
    "stages": ["probe", "targets", "record", "extremes", "captions", "summaries", "calibrate",
               "open", "closed"],
}
"""The e2e test's tiny config with one small CNN (a run in a few seconds)."""


def build_run(root: Path, cache: Path) -> Path:
    """A tiny run at ``root`` plus two result files (the tiny config runs no experiments)."""
    run = run_pipeline(parse_config(TINY), run_dir=root, cache=Cache(cache), progress=False)
    for experiment in ("table7", "fig3"):
        run.write_result(experiment, ResultRow.frame([
            {"experiment": experiment, "key": f"cnn/DB/{s}", "model": "cnn", "group": "DB",
             "series": s, "x": None, "metric": "top1", "value": v, "paper_value": None,
             "note": ""}
            for s, v in (("cos", 0.25), ("wpmi", 0.5), ("soft_wpmi", 0.125))]))
    return root


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a run to plant changes into."""
    shutil.copytree(src, dst)
    return dst


def neuron_text(row: dict[str, Any]) -> str:
    """How the text report names a neuron."""
    return f"{row['model']} {row['layer']} #{row['unit']}"


def swap_top1(path: Path, similarity: str = "cos") -> dict[str, Any]:
    """Swap the concepts at ranks 0 and 1 of the DB / ``similarity`` group with the widest
    gap between them (scores stay with their ranks), in place."""
    run = Run.at(path)
    cs = run.read(ConceptSet)
    closed = cs.filter((pl.col("method") == "DB") & (pl.col("similarity") == similarity)
                       & (pl.col("rank") < 2)).sort([*KEY, "rank"])
    pairs = closed.group_by(KEY, maintain_order=True).agg(
        pl.col("concept"), gap=pl.col("score").first() - pl.col("score").last())
    best = pairs.sort("gap", descending=True).row(0, named=True)
    top, second = best["concept"]
    hit = ((pl.col("model") == best["model"]) & (pl.col("layer") == best["layer"])
           & (pl.col("unit") == best["unit"]) & (pl.col("method") == "DB")
           & (pl.col("similarity") == similarity))
    cs = cs.with_columns(concept=pl.when(hit & (pl.col("concept") == top)).then(pl.lit(second))
                         .when(hit & (pl.col("concept") == second)).then(pl.lit(top))
                         .otherwise(pl.col("concept")))
    run.write(ConceptSet, cs)
    return {**{k: best[k] for k in KEY}, "before": top, "after": second}


def first_neuron(path: Path) -> dict[str, Any]:
    """The first neuron (by key) of the run's calibrated summaries with a kept point."""
    cal = Run.at(path).read(CalibratedSummary).filter(pl.col("kept").list.len() > 0)
    return dict(zip(KEY, cal.sort(KEY).select(KEY).row(0), strict=True))


def _is(neuron: dict[str, Any]) -> pl.Expr:
    return ((pl.col("model") == neuron["model"]) & (pl.col("layer") == neuron["layer"])
            & (pl.col("unit") == neuron["unit"]))


def change_summary_point(path: Path, new: str = "A planted point.") -> dict[str, Any]:
    """Replace the first point of one neuron's S_h, in place."""
    run = Run.at(path)
    neuron = first_neuron(path)
    su = run.read(Summary)
    hit = _is(neuron) & (pl.col("side") == "high")
    old = su.filter(hit)["points"][0][0]
    su = su.with_columns(points=pl.when(hit).then(
        pl.concat_list(pl.lit([new]), pl.col("points").list.slice(1))).otherwise(pl.col("points")))
    run.write(Summary, su)
    return {**neuron, "before": old, "after": new}


def replace_top_clip(path: Path) -> dict[str, Any]:
    """Replace one neuron's most activating clip with a clip outside its top-K, in place."""
    run = Run.at(path)
    neuron = first_neuron(path)
    ex = run.extremes()
    hit = _is(neuron) & (pl.col("side") == "high")
    clips = ex.filter(hit)["clip_ids"][0].to_list()
    probe = run.read(ProbeClip)["clip_id"].to_list()
    new = next(c for c in probe if c not in clips)
    ex = ex.with_columns(clip_ids=pl.when(hit).then(
        pl.concat_list(pl.lit([new]), pl.col("clip_ids").list.slice(1)))
        .otherwise(pl.col("clip_ids")))
    run.write_extremes(ex)
    return {**neuron, "before": clips[0], "after": new}


def change_result(path: Path, experiment: str = "table7", key: str = "cnn/DB/wpmi",
                  delta: float = 0.25) -> dict[str, Any]:
    """Move one result value by ``delta``, in place."""
    run = Run.at(path)
    df = run.results()[experiment]
    old = df.filter(pl.col("key") == key)["value"][0]
    df = df.with_columns(value=pl.when(pl.col("key") == key).then(pl.col("value") + delta)
                         .otherwise(pl.col("value")))
    run.write_result(experiment, df)
    return {"experiment": experiment, "key": key, "before": old, "after": old + delta}


def perturb(path: Path, rel: float) -> None:
    """Move every closed score, extreme activation and result value by a relative ``rel``."""
    run = Run.at(path)
    cs = run.read(ConceptSet)
    run.write(ConceptSet, cs.with_columns(pl.col("score") * (1 + rel)))
    ex = run.extremes()
    run.write_extremes(ex.with_columns(pl.col("values").list.eval(pl.element() * (1 + rel))))
    for name, df in run.results().items():
        run.write_result(name, df.with_columns(pl.col("value") * (1 + rel)))
