"""Benchmark: the frozen-encoder AST (``ast-frozen``) trained per epoch vs on its encoder's
output computed once (``encoder_once``), on ESC-50 (folds 2-5 train, fold 1 test, 400 clips).

Both are the ESC-50 default config of ``ast-frozen`` (20 epochs, batch 32, lr 1e-3, mixup 0.5,
the same seeded random encoder), trained by ``train_target`` in float32 at ``--threads``, one
after the other in this process: ``per_epoch`` (today's default: every epoch runs the frozen
encoder on time-shifted, SpecAugmented, mixed-up log-mels) and ``once`` (``encoder_once``:
one encoder pass over the 2,000 clips, then the classifier fitted on the pooled vectors, input
augmentation off, mixup on the vectors). Records fold-1 accuracy (final and best epoch), wall
and process-CPU seconds, the CPU model, flags, core count, kernel caps and the load average
before and after each.

Usage::

    export HF_HUB_OFFLINE=1 AND_DATA_DIR=../shared/data
    # as on an AVX2-only laptop (torch's kernels capped; the precision is fp32 either way):
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_ast_frozen_once.py   # -> benchmarks/results/ast_frozen_once.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from train_targets import cached_features, load_esc50  # type: ignore[import-not-found]

from and_toolkit.targets import DEFAULT_TARGETS, FeatureConfig, train_target
from and_toolkit.targets.config import TrainConfig

CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _cpu() -> dict[str, Any]:
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"cpu_model": model or platform.processor(), "cores": os.cpu_count(),
            "flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")},
            "kernel_caps": {k: os.environ[k] for k in CAPS if k in os.environ},
            "platform": platform.platform(), "torch": torch.__version__}


def write_results(out: str | Path, results: dict[str, Any], script: str, note: str) -> None:
    """Write ``results`` with its ``_machine`` entry (:func:`machine_block`) to ``out`` as
    sorted, indented JSON."""
    results["_machine"] = machine_block(script, note)
    Path(out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


def machine_block(script: str, note: str) -> dict[str, Any]:
    """The results file's ``_machine`` entry: CPU facts (:func:`_cpu`), the UTC date, the
    command that produced the file (``python benchmarks/<script>`` and this process's
    arguments) and ``note``."""
    return {**_cpu(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:]), "note": note}


def _run(cfg: TrainConfig, feats: Any, targets: Any, folds: Any) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    out = train_target(cfg, feats, targets, folds, progress=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    curve = out.curve
    return {"fold1_accuracy": curve[-1]["test_accuracy"],
            "fold1_accuracy_best_epoch": max(c["test_accuracy"] for c in curve),
            "epochs": len(curve), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "load1_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "config": cfg.model_dump(mode="json", exclude={"cnn"})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/and-targets"),
                    help="where the log-mel features are kept between runs")
    ap.add_argument("--out", default="benchmarks/results/ast_frozen_once.json")
    args = ap.parse_args()
    data = Path(os.environ.get("AND_DATA_DIR", "../shared/data"))
    paths, targets, folds = load_esc50(data)
    feats = cached_features(paths, FeatureConfig(), args.cache)
    base = DEFAULT_TARGETS["ast-frozen"].model_copy(update={"precision": "fp32",
                                                           "threads": args.threads})
    once = TrainConfig.model_validate({**base.model_dump(), "encoder_once": True,
                                       "time_shift": 0, "time_masks": 0, "freq_masks": 0})
    results: dict[str, Any] = {}
    for name, cfg in (("once", once), ("per_epoch", base)):
        results[name] = _run(cfg, feats, targets, folds)
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "config"}),
              flush=True)
    results["speedup_wall"] = round(results["per_epoch"]["wall_s"] / results["once"]["wall_s"], 1)
    results["speedup_cpu"] = round(results["per_epoch"]["cpu_s"] / results["once"]["cpu_s"], 1)
    write_results(args.out, results, "bench_ast_frozen_once.py",
                  "fold 1 has 400 clips: the binomial standard error of an accuracy near 0.16 "
                  "is about 0.018; the two recipes start from the same seeded random encoder")


if __name__ == "__main__":
    main()
