"""The experiment stage's Table 3 job: 'not run' without ratings, the explorer's ratings when
``<run>/ratings.parquet`` exists (on the explorer tests' hand-made run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from explore_run import MODEL, build_run

from and_toolkit.cache import Cache
from and_toolkit.config import TargetSection, parse_config
from and_toolkit.experiments.paper import TABLE3
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.experiment_inputs import Inputs, ModelInfo
from and_toolkit.pipeline.experiment_stage import job_qualitative
from and_toolkit.records import ConceptSet, Rating


def _inputs(root: Path) -> Inputs:
    run = build_run(root / "run")
    cfg = parse_config({**run.manifest()["config"],
                        "targets": [{"id": MODEL, "arch": "ast"}],
                        "experiments": {"annotation_neurons": 2}})
    ctx = Context(cfg=cfg, run=run, cache=Cache(root / "cache"), progress=False)
    probe = ctx.probe()
    rows = np.flatnonzero(probe["fold"].to_numpy() == 1).astype(np.int64)
    neurons = run.neuron_index(MODEL)
    info = ModelInfo(target=TargetSection(id=MODEL, arch="ast"), paper_model="AST",
                     layers=dict(neurons.group_by("layer").agg(pl.len()).iter_rows()),
                     classifier="head", class_names=ctx.class_names(), test_rows=rows,
                     test_clips=probe[rows.tolist()], neurons=neurons)
    return Inputs(ctx=ctx, infos=[info], concepts=run.read(ConceptSet),
                  extremes=run.extremes(), reasons={})


def test_table3_is_not_run_without_ratings_then_uses_them(tmp_path: Path) -> None:
    inp = _inputs(tmp_path)
    before = job_qualitative(inp).frames["table3"]
    assert before.height == 1 and before["note"][0].startswith("not run:")
    assert "and-toolkit explore" in before["note"][0]
    run = inp.ctx.run
    run.write(Rating, Rating.frame([
        {"rating_id": f"{i:032x}", "model": MODEL, "layer": "blocks.0.fc1", "unit": i,
         "method": "SUM", "description": "d", "rating": r, "rater": "a", "comment": None,
         "created": "2026-01-01T00:00:00Z"} for i, r in enumerate((2, 5))]))
    result = job_qualitative(inp)
    table3 = result.frames["table3"]
    rating = table3.filter((pl.col("group") == "SUM") & (pl.col("metric") == "rating")).row(
        0, named=True)
    assert rating["value"] == 3.5 and rating["paper_value"] == TABLE3["SUM"].rating
    assert "not the paper's" in rating["note"]
    assert result.provenance["ratings"] == {"file": "ratings.parquet", "rows": 2}
