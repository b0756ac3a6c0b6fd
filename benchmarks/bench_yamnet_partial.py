"""Benchmark: the fine-tuned YAMNet target (``arch = "yamnet"``) trained on its top blocks only.

For each ``--tuned-blocks`` N: the ESC-50 default config of ``yamnet`` (8 epochs, batch 32,
lr 3e-4) with ``yamnet_tuned_blocks = N``, trained exactly as the pipeline does
(``train_target``: the frozen trunk's output of all 2,000 clips computed once, then the top N
blocks and the head fine-tuned on folds 2-5), cold (an empty temporary cache: the trunk pass
is timed on its own first, then ``train_target`` reads it from that cache). Records fold-1 accuracy (400 clips; final and best epoch; the frozen YAMNet with a
linear head reaches 80.8 %, benchmarks/results/pretrained.json), the wall and process-CPU
seconds of the whole training and of the trunk pass, the per-epoch curve and the load average.

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 AND_DATA_DIR=../shared/data
    python benchmarks/bench_yamnet_partial.py      # writes benchmarks/results/yamnet_partial.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_pretrained import _esc50  # type: ignore[import-not-found]

from and_toolkit.cache import Cache
from and_toolkit.targets.config import DEFAULT_TARGETS, build_model
from and_toolkit.targets.pretrained.partial import trunk_outputs
from and_toolkit.targets.pretrained.pins import backbone_sha256
from and_toolkit.targets.timing import torch_threads
from and_toolkit.targets.train import train_target


def bench(n_tuned: int, args: argparse.Namespace) -> dict[str, Any]:
    waves, targets, folds = _esc50()
    cfg = DEFAULT_TARGETS["yamnet"].model_copy(update={
        "yamnet_tuned_blocks": n_tuned, "precision": "fp32", "threads": args.threads})
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(root=Path(tmp))
        # the trunk pass as train_target makes it (same keys), timed on its own; training then
        # reads every clip's output from the cache
        w0, c0 = time.perf_counter(), time.process_time()
        with torch_threads(args.threads):
            trunk_outputs(build_model(cfg), waves, np.arange(len(waves)), n_tuned, cache,
                          backbone_sha256("yamnet"))
        trunk_wall, trunk_cpu = time.perf_counter() - w0, time.process_time() - c0
        trained = train_target(cfg, waves, targets, folds, progress=False, cache=cache)
        wall = time.perf_counter() - w0 - trunk_wall
        cpu = time.process_time() - c0 - trunk_cpu
    curve = trained.curve
    return {
        "yamnet_tuned_blocks": n_tuned, "threads": args.threads,
        "fold1_accuracy": curve[-1]["test_accuracy"],
        "fold1_accuracy_best_epoch": max(c["test_accuracy"] for c in curve),
        "cold_total_wall_s": round(trunk_wall + wall, 1),
        "cold_total_cpu_s": round(trunk_cpu + cpu, 1),
        "trunk_pass_wall_s": round(trunk_wall, 1), "trunk_pass_cpu_s": round(trunk_cpu, 1),
        "train_after_trunk_wall_s": round(wall, 1), "train_after_trunk_cpu_s": round(cpu, 1),
        "epochs_wall_s": round(sum(c["seconds"] for c in curve), 1),
        "trainable_parameters": sum(p.numel() for p in trained.model.parameters()
                                    if p.requires_grad),
        "curve": [{k: round(float(v), 4) for k, v in c.items()} for c in curve],
        "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "config": cfg.model_dump(mode="json", exclude={"ast", "cnn"}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tuned-blocks", type=int, nargs="+",
                    default=[DEFAULT_TARGETS["yamnet"].yamnet_tuned_blocks])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/yamnet_partial.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    for n in args.tuned_blocks:
        results[f"yamnet (top {n} block(s) + head)"] = bench(n, args)
        print(json.dumps(results, indent=2), flush=True)
    results["_machine"] = {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_yamnet_partial.py " + " ".join(sys.argv[1:]),
        "compare": "yamnet-frozen (linear head on the frozen embedding): fold-1 accuracy 0.808 "
                   "(benchmarks/results/pretrained.json); the full fine-tune (every layer) cost "
                   "~6 CPU-s per step of 32 clips, ~40 CPU-min for 8 epochs",
    }
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
