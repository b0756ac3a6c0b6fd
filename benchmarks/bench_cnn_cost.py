"""Benchmark: compute per clip of the full-resolution ESC-50 CNN and of cheaper candidates, and
each one's fold-1 accuracy (one candidate became the ``cnn`` default: ``CHOSEN``).

Issue 18 asks for a CNN with >= 3x less compute per clip at equal or better fold-1 accuracy. The
candidates pool the normalised log-mel input over ``time_pool`` frames before the first block
(``CNNArchConfig.time_pool``; 3 and 4 give 3.0x and 4.0x fewer multiply-accumulates). Cost:

- multiply-accumulates per 5 s clip (512 frames x 64 mel), counted with forward hooks on every
  Conv2d / Linear (exact for this architecture: pooling, norms and activations are not counted);
- measured seconds per forward pass (inference, batch 32) and per training step (batch 32, AdamW,
  fp32 and bf16 autocast), both architectures timed in alternation in one process, so their ratio
  is comparable on a shared, noisy machine.

Accuracy: ``--train NAME ...`` trains those configs on ESC-50 (folds 2-5, fold 1 = test,
features computed once and cached as ``benchmarks/train_targets.py`` does) with the pipeline's
training code; ``--trained NAME=LOG`` reads a training that ``benchmarks/train_targets.py`` ran
with the same config (its last JSON line: config and curve; the config must match). Trainings of
an earlier results file are kept. The CPU model, core count, thread count and load average are
recorded beside the figures.

Usage::

    export AND_DATA_DIR=../shared/data
    python benchmarks/bench_cnn_cost.py                      # cost only, ~1 min
    python benchmarks/bench_cnn_cost.py --train time_pool=3  # + that training (~15-25 min)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cold_run import machine  # noqa: E402

from and_toolkit.targets import DEFAULT_TARGETS, TrainConfig, build_model  # noqa: E402
from and_toolkit.targets.cnn import CNNArchConfig  # noqa: E402
from and_toolkit.targets.timing import autocast  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "cnn_cost.json"
FRAMES, MELS, BATCH = 512, 64, 32
FULL = "full resolution"
"""The ESC-50 CNN before issue 18: channels 24-48-96-160, stride 1, 20 epochs; the ratios are
against it."""
CHOSEN = "stem_stride=2, widths 24-48-112-224, 30 epochs"
"""The candidate that became the ``cnn`` default (``DEFAULT_TARGETS["cnn"]``)."""
_FULL = TrainConfig(arch="cnn")


def _arch(arch: dict[str, Any], **update: Any) -> TrainConfig:
    cnn = CNNArchConfig(**{**_FULL.cnn.model_dump(), **arch})
    return _FULL.model_copy(update={"cnn": cnn, **update})


def _pooled(time_pool: int, **update: Any) -> TrainConfig:
    return _arch({"time_pool": time_pool}, **update)


CONFIGS: dict[str, TrainConfig] = {
    FULL: _FULL,
    "time_pool=3": _pooled(3),
    "time_pool=4": _pooled(4),
    "time_pool=4, 30 epochs": _pooled(4, epochs=30),
    "time_pool=4, 30 epochs, patience 5": _pooled(4, epochs=30, patience=5),
    "stem_stride=2, 30 epochs": _arch({"stem_stride": 2}, epochs=30),
    CHOSEN: _arch({"stem_stride": 2, "channels": (24, 48, 112, 224)}, epochs=30),
    "stem_stride=2, widths 24-48-112-224, 30 epochs, seed 1":
        _arch({"stem_stride": 2, "channels": (24, 48, 112, 224)}, epochs=30, seed=1),
}
"""The full-resolution CNN and the cheaper candidates (same recipe unless named)."""
if CONFIGS[CHOSEN] != DEFAULT_TARGETS["cnn"]:
    raise SystemExit(f"{CHOSEN!r} is no longer the cnn default: rename it or the default")


def macs_per_clip(cfg: TrainConfig) -> int:
    """Multiply-accumulates of one forward pass over a [1, 512, 64] clip (Conv2d + Linear)."""
    model = build_model(cfg).eval()
    total = 0

    def hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            total += out[0].numel() * k
        elif isinstance(mod, nn.Linear):
            total += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, FRAMES, MELS))
    for h in handles:
        h.remove()
    return total


def _step_fn(model: nn.Module, precision: str, x: torch.Tensor, y: torch.Tensor) -> Any:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step() -> None:
        with autocast(precision):
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timings(configs: dict[str, TrainConfig], rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds per forward pass and per training step (fp32, bf16) of each config, timed
    in alternation (one of each per round, after one warm-up round)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, FRAMES, MELS, generator=gen)
    y = torch.randint(0, 50, (BATCH,), generator=gen)
    fns: dict[tuple[str, str], Any] = {}
    for name, cfg in configs.items():
        base = build_model(cfg)
        infer = copy.deepcopy(base).eval()
        fns[(name, "forward_fp32")] = lambda m=infer: m(x)
        for p in ("fp32", "bf16"):
            fns[(name, f"step_{p}")] = _step_fn(copy.deepcopy(base).train(), p, x, y)
    seconds: dict[tuple[str, str], list[float]] = {k: [] for k in fns}
    for r in range(rounds + 1):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            if key[1].startswith("forward"):
                with torch.inference_mode():
                    fn()
            else:
                fn()
            if r:
                seconds[key].append(time.perf_counter() - t0)
    out: dict[str, dict[str, float]] = {name: {} for name in configs}
    for (name, what), values in seconds.items():
        out[name][f"{what}_s"] = round(statistics.median(values), 4)
    return out


def train_some(configs: dict[str, TrainConfig]) -> dict[str, dict[str, Any]]:
    """Train each config on ESC-50 (fold 1 = test) with the pipeline's training code."""
    from train_targets import cached_features, load_esc50

    from and_toolkit.targets import FeatureConfig, resolve_train_config, train_target
    from and_toolkit.targets.early_stop import final_row

    data = Path(os.environ.get("AND_DATA_DIR", "../shared/data"))
    paths, targets, folds = load_esc50(data)
    feats = cached_features(paths, FeatureConfig(), Path("/tmp/and-targets"))
    out = {}
    for name, cfg in configs.items():
        cfg, decision = resolve_train_config(cfg)
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        trained = train_target(cfg, feats, targets, folds, progress=False)
        kept = final_row(trained.curve)
        out[name] = {"source": "this benchmark (--train)",
                     "fold1_accuracy": kept["test_accuracy"], "kept_epoch": kept["epoch"],
                     "epochs_run": len(trained.curve), "max_epochs": cfg.epochs,
                     "precision": cfg.precision, "threads": cfg.threads,
                     "train_wall_s": round(time.perf_counter() - t0, 1),
                     "loadavg_1min_before_after": [round(load0, 2),
                                                   round(os.getloadavg()[0], 2)],
                     "curve": trained.curve}
        print(f"{name}: fold-1 {kept['test_accuracy']:.4f} (epoch {kept['epoch']} of "
              f"{len(trained.curve)} run), {out[name]['train_wall_s']} s, "
              f"{decision.precision_source} {cfg.precision}", flush=True)
    return out


def read_log(name: str, path: Path) -> dict[str, Any]:
    """A training by ``benchmarks/train_targets.py``: its last ``{"config", "curve"}`` line,
    checked against ``CONFIGS[name]`` (precision and threads aside)."""
    from and_toolkit.targets.early_stop import final_row

    lines = [json.loads(x) for x in path.read_text().splitlines() if x.startswith('{"config"')]
    if not lines:
        raise SystemExit(f"{path}: no training line (train_targets.py prints one per target)")
    got = lines[-1]
    skip = {"precision", "threads"}  # fields added after the log was written have defaults:
    have = {k: v for k, v in got["config"].items() if k not in skip}  # compare what it has
    want = {k: v for k, v in CONFIGS[name].model_dump(mode="json").items() if k in have}
    if have != want:
        diff = sorted(k for k in want if have.get(k) != want[k])
        raise SystemExit(f"{path}: the logged config differs from {name!r} in {diff}")
    curve = got["curve"]
    kept = final_row(curve)
    return {"source": f"benchmarks/train_targets.py log {path.name}",
            "fold1_accuracy": kept["test_accuracy"], "kept_epoch": kept["epoch"],
            "epochs_run": len(curve), "max_epochs": got["config"]["epochs"],
            "precision": got["config"]["precision"], "threads": got["config"]["threads"],
            "train_wall_s": round(sum(r["seconds"] for r in curve), 1), "curve": curve}


def from_run(run: Path) -> dict[str, Any]:
    """The ``cnn`` target's training as a run's targets stage recorded it."""
    import polars as pl

    stage = json.loads((run / "manifest.json").read_text())["stages"]["targets"]["cnn"]
    curve = pl.read_parquet(run / "training.parquet").filter(pl.col("model") == "cnn")
    return {"source": f"run {run} (targets stage, weights key {stage['weights_key'][:12]})",
            "fold1_accuracy": stage["test_accuracy"], "epochs_run": curve.height,
            "precision": stage["precision"], "threads": stage.get("threads"),
            "train_wall_s": stage["train_seconds"],
            "curve": curve.drop("model").to_dicts()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    ap.add_argument("--train", nargs="*", default=[], choices=list(CONFIGS),
                    help="train these configs on ESC-50")
    ap.add_argument("--trained", nargs="*", default=[], metavar="NAME=LOG",
                    help="read these trainings from benchmarks/train_targets.py logs")
    ap.add_argument("--full-from-run", type=Path, default=None, metavar="RUN",
                    help="read the full-resolution CNN's training from a run (its cnn target, "
                         "trained before the default changed)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    configs = CONFIGS
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    macs = {n: macs_per_clip(c) for n, c in configs.items()}
    times = timings(configs, args.rounds)
    result: dict[str, Any] = {
        "benchmark": "cnn_cost", "date": datetime.datetime.now(datetime.UTC).isoformat(
            timespec="seconds"), "machine": machine(), "timing_threads": args.threads,
        "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "clip": {"frames": FRAMES, "mel_bins": MELS}, "batch": BATCH,
        "configs": {n: c.model_dump(mode="json", include={"cnn", "epochs", "patience",
                                                          "val_fraction"})
                    for n, c in configs.items()},
        "macs_per_clip": macs,
        "params": {n: sum(p.numel() for p in build_model(c).parameters())
                   for n, c in configs.items()},
        "seconds": times,
        "full_over_candidate": {
            n: {"macs": round(macs[FULL] / macs[n], 2),
                "forward_fp32_s": round(times[FULL]["forward_fp32_s"]
                                        / times[n]["forward_fp32_s"], 2),
                "step_fp32_s": round(times[FULL]["step_fp32_s"] / times[n]["step_fp32_s"], 2)}
            for n in configs if n != FULL},
        "default": CHOSEN,
    }
    print(json.dumps({k: result[k] for k in ("macs_per_clip", "full_over_candidate")}),
          flush=True)
    training: dict[str, Any] = {}
    if args.out.is_file():  # keep the trainings of an earlier run
        training = json.loads(args.out.read_text()).get("training", {})
    for item in args.trained:
        name, _, log = item.rpartition("=")
        if name not in CONFIGS:
            raise SystemExit(f"--trained {item}: {name!r} is not one of {sorted(CONFIGS)}")
        training[name] = read_log(name, Path(log))
    if args.full_from_run is not None:
        training[FULL] = from_run(args.full_from_run)
    training |= train_some({n: configs[n] for n in args.train})
    result["training"] = {n: training[n] for n in configs if n in training}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
