"""Benchmark: per-clip forward cost and fold-1 accuracy of the pretrained ESC-50 targets.

For each arch (``yamnet-frozen``, ``whisper-frozen``; ``--whisper-seconds`` for the shortened
window) on the real ESC-50 clips of ``$AND_DATA_DIR/esc50`` (5 s, 16 kHz):

1. per-clip forward cost: the full model (front end + backbone + head) on ``--timing-clips``
   clips in batches of 8, wall and process-CPU seconds per clip, at ``--threads`` torch threads,
   with the 1-min load average before and after (the machine is shared);
2. with ``--train``: the frozen target trained exactly as the pipeline does
   (``train_target`` with the arch's default config: embeddings of all 2,000 clips, linear head
   on folds 2-5), its fold-1 accuracy (400 clips) and the wall time of the whole training;
3. the extrapolated cost it adds to a cold ESC-50 run: training (one embedding pass) + the
   record stage (one more pass over 2,000 clips) + ``--fold1-passes`` evaluations of fold 1
   (pruning / ablation experiments), each at the measured per-clip cost.

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 AND_DATA_DIR=../shared/data
    python benchmarks/bench_pretrained.py                # timing only (nox -s benchmarks)
    # the committed results (fold-1 accuracy: embeds all 2,000 clips per arch)
    python benchmarks/bench_pretrained.py --train --archs yamnet-frozen whisper-frozen \
        --whisper-seconds 5 --out benchmarks/results/pretrained.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf
import torch

from and_toolkit.targets.config import DEFAULT_TARGETS
from and_toolkit.targets.train import train_target


def _esc50() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    root = Path(os.environ["AND_DATA_DIR"]) / "esc50"
    meta = pl.read_csv(root / "meta" / "esc50.csv").sort("filename")
    waves = np.stack([sf.read(root / "audio" / f.replace(".wav", ".flac"), dtype="float32")[0]
                      for f in meta["filename"]])
    return waves, meta["target"].to_numpy(), meta["fold"].to_numpy()


def _config(arch: str, whisper_seconds: float | None) -> Any:
    cfg = DEFAULT_TARGETS[arch]
    if arch == "whisper-frozen" and whisper_seconds is not None:
        cfg = cfg.model_copy(update={"whisper_window_seconds": whisper_seconds})
    return cfg


def bench(arch: str, waves: np.ndarray, targets: np.ndarray, folds: np.ndarray,
          args: argparse.Namespace) -> dict[str, Any]:
    from and_toolkit.targets.config import build_model

    cfg = _config(arch, args.whisper_seconds).model_copy(update={"threads": args.threads})
    torch.set_num_threads(args.threads)
    model = build_model(cfg).eval()
    x = torch.from_numpy(waves[:args.timing_clips])
    with torch.inference_mode():
        model(x[:2])  # warm-up
        load0 = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, len(x), 8):
            model(x[i:i + 8])
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    n = len(x)
    out: dict[str, Any] = {
        "arch": arch, "threads": args.threads, "timing_clips": n,
        "forward_wall_s_per_clip": round(wall / n, 4), "forward_cpu_s_per_clip": round(cpu / n, 4),
        "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "config": cfg.model_dump(mode="json", exclude={"ast", "cnn"}),
    }
    per_clip = wall / n
    passes = 2 * len(waves) + args.fold1_passes * int((folds == 1).sum())
    out["extrapolated_forward_s"] = round(per_clip * passes, 1)
    out["extrapolation"] = (f"{2 * len(waves)} clips (embedding + record passes) + "
                            f"{args.fold1_passes} fold-1 passes x {(folds == 1).sum()} clips")
    if args.train:
        t0 = time.perf_counter()
        trained = train_target(cfg, waves, targets, folds, progress=False)
        out["train_wall_s"] = round(time.perf_counter() - t0, 1)
        out["fold1_accuracy"] = trained.curve[-1]["test_accuracy"]
        out["fold1_accuracy_best_epoch"] = max(c["test_accuracy"] for c in trained.curve)
        out["epochs"] = len(trained.curve)
        out["cold_run_added_s"] = round(out["train_wall_s"] + per_clip * (
            len(waves) + args.fold1_passes * int((folds == 1).sum())), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=["yamnet-frozen", "whisper-frozen"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timing-clips", type=int, default=48)
    ap.add_argument("--fold1-passes", type=int, default=10,
                    help="fold-1 evaluations assumed for the pruning / ablation experiments")
    ap.add_argument("--whisper-seconds", type=float, default=None,
                    help="Whisper window (s); default the faithful 30 s")
    ap.add_argument("--train", action="store_true", help="also train and measure accuracy")
    ap.add_argument("--out", default="benchmarks/results/pretrained_timing.json")
    args = ap.parse_args()
    waves, targets, folds = _esc50()
    results = {}
    for arch in args.archs:
        results[arch] = bench(arch, waves, targets, folds, args)
        print(json.dumps(results[arch], indent=2), flush=True)
    results["_machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                           "torch": torch.__version__,
                           "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                           "command": "python benchmarks/bench_pretrained.py " + " ".join(
                               f"{k}={v}" for k, v in vars(args).items())}
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")



if __name__ == "__main__":
    main()
