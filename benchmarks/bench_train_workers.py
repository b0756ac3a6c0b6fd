"""Benchmark: a run's targets trained one after another vs side by side in worker processes.

The targets stage trains the uncached targets in ``usable cores // threads`` worker processes
at once when the measured thread count leaves cores idle (``targets/concurrent.py``). Whether
that pays depends on the machine: two trainings on two cores share memory bandwidth and caches
(and on a VM the two vCPUs may be one physical core's hyperthreads). This measures it with the
ESC-50 default configs of the three targets trained here (``DEFAULT_TARGETS``: ``ast``,
``ast-frozen``, ``cnn``), shortened to ``--epochs`` on random log-mel inputs of ESC-50's shape
(training time does not depend on the values), in the pipeline's training precision for this
machine (``AND_TRAIN_PRECISION`` or the probe), each mode in fresh caches:

- ``sequential-1``: one after another in this process, one thread each (the stage without
  workers when the probe chooses one thread);
- ``sequential-all``: one after another, every usable core each (what a larger thread count buys);
- ``workers``: side by side, one thread each, ``min(cores, 3)`` workers (spawn included);
- ``pipeline``: what the targets stage does: threads measured on each target's own step
  (``resolve_train_config`` with the clip shape, no memory), then workers when they fit
  (``workers_for``), else one after another; the probe's seconds are included.

Rounds alternate the modes (the machine is shared); the results file keeps every wall time, the
medians, the ratios and the CPU model, core count and load average.

Usage::

    python benchmarks/bench_train_workers.py                      # 2 epochs, 2 rounds
    python benchmarks/bench_train_workers.py --emulate-avx2 --out benchmarks/results/train_workers_avx2.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cold_run import AVX2_ENV, commit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "train_workers.json"
MODES = ("sequential-1", "sequential-all", "workers", "pipeline")
ARCHS = ("ast", "cnn", "ast-frozen")


def _one(mode: str, epochs: int, clips: int) -> dict[str, Any]:
    """Train the three targets once in ``mode`` (run in a fresh process); wall seconds."""
    import numpy as np

    from and_toolkit.cache import Cache
    from and_toolkit.targets import DEFAULT_TARGETS
    from and_toolkit.targets.concurrent import (
        TrainJob,
        train_and_store,
        train_concurrently,
        workers_for,
    )
    from and_toolkit.targets.precision import resolve_train_config
    from and_toolkit.targets.timing import usable_cores

    cores = usable_cores()
    threads = cores if mode == "sequential-all" else None if mode == "pipeline" else 1
    jobs = []
    rng = np.random.default_rng(0)
    start = time.perf_counter()  # the pipeline mode's thread probes count
    for arch in ARCHS:
        base = DEFAULT_TARGETS[arch]
        frames, mels = base.ast.max_length, base.ast.num_mel_bins
        if arch == "cnn":
            mels = base.cnn.num_mel_bins
        cfg, _ = resolve_train_config(base.model_copy(update={"epochs": epochs, "threads": threads,
                                                              "patience": None}),
                                      clip_shape=(frames, mels) if mode == "pipeline" else None)
        inputs = rng.normal(size=(clips, frames, mels)).astype(np.float32)
        targets = np.arange(clips) % cfg.n_classes
        folds = np.arange(clips) % 5 + 1
        jobs.append(TrainJob(arch, cfg, f"bench-{arch}", inputs, targets, folds))
    workers = (workers_for([j.cfg.threads or 1 for j in jobs], len(jobs)) if mode == "pipeline"
               else min(cores, len(jobs)) if mode == "workers" else 1)
    probe_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp))
        start = time.perf_counter()
        if workers > 1:
            train_concurrently(jobs, cache, workers=workers)
        else:
            for j in jobs:
                train_and_store(cache, j.cfg, j.key, j.inputs, j.targets, j.folds, progress=False)
        wall = time.perf_counter() - start + (probe_s if mode == "pipeline" else 0.0)
    return {"mode": mode, "wall_s": round(wall, 2), "workers": workers,
            "threads": {j.target_id: j.cfg.threads for j in jobs},
            "precision": jobs[0].cfg.precision,
            "probe_s": round(probe_s, 2) if mode == "pipeline" else 0.0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--clips", type=int, default=400, help="clips (4/5 train, 1/5 test)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--emulate-avx2", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)  # internal: one measurement
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.epochs, args.clips)))
        return 0
    env = {**os.environ, **(AVX2_ENV if args.emulate_avx2 else {})}
    load0 = os.getloadavg()[0]
    runs: dict[str, list[float]] = {m: [] for m in MODES}
    chosen: list[dict[str, Any]] = []
    precision = ""
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--one", mode, "--epochs",
                                  str(args.epochs), "--clips", str(args.clips)], env=env,
                                 check=True, capture_output=True, text=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            runs[mode].append(row["wall_s"])
            precision = row["precision"]
            if mode == "pipeline":
                chosen.append({"threads": row["threads"], "workers": row["workers"],
                               "probe_s": row["probe_s"]})
            print(mode, row["wall_s"], flush=True)
    med = {m: statistics.median(v) for m, v in runs.items()}
    result = {
        "benchmark": "train_workers",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "code": commit(), "emulated_avx2": AVX2_ENV if args.emulate_avx2
        else {}, "load1_before": load0, "load1_after": os.getloadavg()[0],
        "targets": list(ARCHS), "epochs": args.epochs, "clips": args.clips,
        "precision": precision, "wall_s": runs, "median_wall_s": med,
        "sequential_1_over_workers": round(med["sequential-1"] / med["workers"], 3),
        "sequential_all_over_workers": round(med["sequential-all"] / med["workers"], 3),
        "pipeline_choices": chosen,
        "pipeline_over_best": round(med["pipeline"] / min(v for k, v in med.items()
                                                          if k != "pipeline"), 3),
        "pipeline_probe_s": statistics.median(c["probe_s"] for c in chosen),
        "note": "ESC-50 default configs of the three targets trained here, shortened to "
                "`epochs` on random inputs of ESC-50's shape; the workers' wall includes "
                "starting the spawn processes and handing them the inputs; the pipeline's "
                "includes its thread probes (pipeline_probe_s: once per machine, config and "
                "shape, then remembered)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: result[k] for k in ("median_wall_s", "pipeline_choices",
                                             "pipeline_over_best")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
