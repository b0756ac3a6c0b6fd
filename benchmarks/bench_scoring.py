"""Benchmark of the score stage (issue 15) on a copy of a finished ESC-50 run.

Scores every neuron of the run for every description kind (closed top-1 per method x
similarity, calibrated summary S_h, open concepts; captions alone and the descriptor variant;
the audio side when the run's audio-text encoder is available) with ``score_run``, the stage's
own function, in this process. The first call warms the embedding cache (description and
caption embeddings are content-addressed: a later call encodes nothing); then ``--repeats``
timed calls measure wall and process CPU time of the whole scoring (``total_s``), of the
encoder calls (``encode_s``, cache reads when warm) and of the per-layer scoring
(``layers_s``). Goal: scoring every ESC-50 neuron for every description kind <= 60 s.

It also reports, per description kind (captions alone, all models pooled), the median AUC, the
null's median and the share of neurons above chance (AUC above the 95th percentile of the null
of its own layer and kind), from the scored rows.

The machine is shared: the load average before and after each call is recorded; CPU seconds
are the more stable measure when other processes compete for the cores.

Usage: python benchmarks/bench_scoring.py --run /tmp/copy-of-esc50 [--config configs/esc50.toml]
       [--repeats 3] [--out benchmarks/results/scoring.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import polars as pl

from and_toolkit.cache import Cache
from and_toolkit.config import load_config
from and_toolkit.experiments.explanation_quality import description_label, with_chance
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.score_stage import score_run
from and_toolkit.run import Run


def _timed(ctx: Context) -> tuple[pl.DataFrame, dict[str, Any]]:
    info: dict[str, Any] = {"not_run": {}}
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    scores = score_run(ctx, info)
    out = {"total_s": round(time.perf_counter() - wall, 2),
           "cpu_s": round(time.process_time() - cpu, 2),
           "encode_s": info["texts"]["encode_s"], "layers_s": info["layers_s"],
           "loadavg_1min_before": round(load, 2),
           "loadavg_1min_after": round(os.getloadavg()[0], 2), "not_run": info["not_run"],
           "descriptions": info["texts"]["descriptions"]}
    return scores, out


def _per_method(scores: pl.DataFrame, run: Run) -> list[dict[str, Any]]:
    df = with_chance(scores, run.neuron_index()).filter(
        (pl.col("source") == "caption") & (pl.col("variant") == ""))
    rows = []
    for (kind, method, sim), part in sorted(
            df.partition_by(["kind", "method", "similarity"], as_dict=True).items()):
        scored = part.filter(pl.col("auc").is_not_null() & pl.col("chance_auc").is_not_null())
        rows.append({
            "description": description_label(str(kind), str(method), str(sim)),
            "neurons_scored": scored.height,
            "median_auc": round(float(part["auc"].drop_nulls().median()), 4),  # type: ignore[arg-type]
            "null_median_auc": round(float(part["null_auc"].drop_nulls().median()), 4),  # type: ignore[arg-type]
            "pct_above_chance": round(100.0 * float(scored["above"].mean()), 2),  # type: ignore[arg-type]
            "median_spearman": round(float(part["spearman"].drop_nulls().median()), 4),  # type: ignore[arg-type]
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path,
                        help="a writable copy of a finished run (nothing is written into it)")
    parser.add_argument("--config", default="configs/esc50.toml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/scoring.json")
    args = parser.parse_args()
    cfg = load_config(args.config)
    run = Run.at(args.run)
    ctx = Context(cfg=cfg, run=run, cache=Cache(), progress=False)
    scores, warm = _timed(ctx)
    timed = [_timed(ctx)[1] for _ in range(args.repeats)]
    neurons = scores.select("model", "layer", "unit").unique().height
    result = {
        "benchmark": "score stage: every neuron x every description kind (issue 15)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "")},
        "run": str(args.run), "config": args.config, "q": cfg.score.q, "seed": cfg.score.seed,
        "neurons": neurons, "rows": scores.height,
        "kinds": scores.select("kind", "method", "similarity", "variant", "source").unique()
        .height,
        "first_call": warm, "timed_calls": timed,
        "median_total_s": statistics.median(t["total_s"] for t in timed),
        "median_cpu_s": statistics.median(t["cpu_s"] for t in timed),
        "goal_s": 60.0,
        "per_description_captions_alone": _per_method(scores, run),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(json.dumps({k: result[k] for k in ("neurons", "rows", "median_total_s",
                                             "median_cpu_s")}, indent=1))
    for row in result["per_description_captions_alone"]:
        print(row)


if __name__ == "__main__":
    main()
