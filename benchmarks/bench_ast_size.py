"""Benchmark: a smaller supervised AST (``ast``) on ESC-50 against today's, per epoch and in all.

Trains the ESC-50 ``ast`` target (``configs/esc50.toml``: the default config with 40 epochs)
with a smaller encoder (``--ast``, default 4 layers of width 128, 4 heads, MLP 512, against 6 of
192, 3 heads, MLP 768) for the full ``--epochs`` on folds 2-5, fold 1 the test (400 clips), in
float32 at ``--threads``; then, in the same process, ``--ratio-epochs`` epochs of today's
encoder, so the per-epoch cost of the two is compared on the same machine in one run. Today's
full training is not repeated: its fold-1 accuracy and time are read from
``benchmarks/results/cold_esc50_avx2.json`` (same config, fp32, 2 threads) and quoted beside.
Records fold-1 accuracy (final and best epoch), wall and process-CPU seconds, parameters, the
CPU model, flags, core count, kernel caps and the load average.

Usage::

    export HF_HUB_OFFLINE=1 AND_DATA_DIR=../shared/data
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_ast_size.py        # -> benchmarks/results/ast_size.json (~20 min)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bench_ast_frozen_once import write_results  # type: ignore[import-not-found]
from train_targets import cached_features, load_esc50  # type: ignore[import-not-found]

from and_toolkit.targets import DEFAULT_TARGETS, FeatureConfig, train_target
from and_toolkit.targets.config import TrainConfig

SMALL = {"num_layers": 4, "hidden_size": 128, "num_heads": 4, "intermediate_size": 512}
ESC50_EPOCHS = 40  # configs/esc50.toml's [[targets]] ast


def _run(cfg: TrainConfig, data: tuple[Any, Any, Any]) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    out = train_target(cfg, *data, progress=False)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    curve = out.curve
    return {"fold1_accuracy": curve[-1]["test_accuracy"],
            "fold1_accuracy_best_epoch": max(c["test_accuracy"] for c in curve),
            "epochs": len(curve), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "wall_s_per_epoch": round(wall / len(curve), 2),
            "cpu_s_per_epoch": round(cpu / len(curve), 2),
            "parameters": sum(p.numel() for p in out.model.parameters()),
            "load1_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "curve": [{k: round(float(v), 4) for k, v in c.items()} for c in curve],
            "config": cfg.model_dump(mode="json", exclude={"cnn"})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ast", default=json.dumps(SMALL), help="the smaller encoder (JSON)")
    ap.add_argument("--epochs", type=int, default=ESC50_EPOCHS)
    ap.add_argument("--ratio-epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/and-targets"))
    ap.add_argument("--out", default="benchmarks/results/ast_size.json")
    args = ap.parse_args()
    paths, targets, folds = load_esc50(Path(os.environ.get("AND_DATA_DIR", "../shared/data")))
    data = (cached_features(paths, FeatureConfig(), args.cache), targets, folds)
    base = DEFAULT_TARGETS["ast"].model_copy(update={"precision": "fp32", "threads": args.threads,
                                                    "epochs": args.epochs})
    small = TrainConfig.model_validate({**base.model_dump(), "ast": json.loads(args.ast)})
    today = base.model_copy(update={"epochs": args.ratio_epochs})
    results: dict[str, Any] = {"small": _run(small, data)}
    print("small", {k: v for k, v in results["small"].items() if k not in ("curve", "config")},
          flush=True)
    results["today_first_epochs"] = _run(today, data)
    for k in ("wall", "cpu"):
        results[f"per_epoch_{k}_ratio_today_over_small"] = round(
            results["today_first_epochs"][f"{k}_s_per_epoch"]
            / results["small"][f"{k}_s_per_epoch"], 2)
    ref = json.loads(Path("benchmarks/results/cold_esc50_avx2.json").read_text())
    results["today_full_training_quoted"] = {
        "source": "benchmarks/results/cold_esc50_avx2.json (commit "
                  f"{ref['code']['commit'][:7]}, same config, fp32, 2 threads)",
        **{k: ref["cold"]["training"]["ast"][k] for k in ("test_accuracy", "train_seconds")}}
    write_results(args.out, results, "bench_ast_size.py",
                  "fold 1 has 400 clips: the binomial standard error of an accuracy near 0.4 is "
                  "about 0.025; accuracy of one seed")


if __name__ == "__main__":
    main()
