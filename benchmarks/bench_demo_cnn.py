"""Benchmark: the demo's small CNN with and without the strided first convolution, over seeds.

The ``cnn`` default took ``stem_stride = 2`` (issue 18, ``benchmarks/bench_cnn_cost.py`` for
ESC-50). The demo's CNN (``configs/demo.toml``: channels 16-32-48-64, 12 epochs, 72 synthetic
training clips, 24 test clips) inherits it. One seed of 24 test clips says little (a clip is
4.2 points), so this trains the demo CNN at stride 1 and 2 for several seeds with the
pipeline's training code (fp32, one thread, so the two are timed alike) and records each fold-1
accuracy and training time, with the CPU model, core count and load average.

Usage::

    python benchmarks/bench_demo_cnn.py            # 4 seeds each, ~2 min
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cold_run import machine  # noqa: E402

from and_toolkit.cache import Cache  # noqa: E402
from and_toolkit.config import load_config  # noqa: E402
from and_toolkit.pipeline import run_pipeline  # noqa: E402
from and_toolkit.pipeline.context import Context  # noqa: E402
from and_toolkit.pipeline.targets import inputs_of, train_config  # noqa: E402
from and_toolkit.run import Run  # noqa: E402
from and_toolkit.targets import train_target  # noqa: E402
from and_toolkit.targets.early_stop import final_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo_cnn.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    cfg = load_config(ROOT / "configs" / "demo.toml")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        # the probe stage alone: the synthetic clips and their folds, no training
        run_pipeline(cfg, run_dir=Path(tmp) / "run", only=["probe"], progress=False)
        ctx = Context(cfg=cfg, run=Run.at(Path(tmp) / "run"), cache=Cache(), progress=False)
        target = next(t for t in cfg.targets if t.arch == "cnn")
        base = train_config(ctx, target)
        probe = ctx.probe()
        labels = probe["target"].to_numpy().astype("int64")
        folds = probe["fold"].to_numpy().astype("int64")
        feats = inputs_of(ctx, base)
        rows: list[dict[str, Any]] = []
        for stride in (1, 2):
            for seed in range(args.seeds):
                c = base.model_copy(update={
                    "cnn": base.cnn.model_copy(update={"stem_stride": stride}), "seed": seed,
                    "precision": "fp32", "threads": 1})
                t0 = time.perf_counter()
                trained = train_target(c, feats, labels, folds, progress=False)
                rows.append({"stem_stride": stride, "seed": seed,
                             "fold1_accuracy": final_row(trained.curve)["test_accuracy"],
                             "train_wall_s": round(time.perf_counter() - t0, 2)})
                print(rows[-1], flush=True)
    summary = {}
    for stride in (1, 2):
        mine = [r for r in rows if r["stem_stride"] == stride]
        summary[str(stride)] = {
            "mean_fold1_accuracy": round(statistics.mean(float(r["fold1_accuracy"]) for r in mine), 4),
            "median_train_wall_s": statistics.median(float(r["train_wall_s"]) for r in mine)}
    result = {"benchmark": "demo_cnn", "date": datetime.datetime.now(datetime.UTC).isoformat(
                  timespec="seconds"), "machine": machine(),
              "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
              "config": "configs/demo.toml (target cnn), fp32, 1 thread",
              "test_clips": int((folds == base.test_fold).sum()), "by_stride": summary,
              "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
