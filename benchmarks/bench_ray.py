"""Benchmark: the record stage on the Ray engine vs the local engine, ESC-50, same process.

Goal (issue 16): Ray engine wall time <= 1.3x the local engine's on the ESC-50 record stage.

Usage::

    export AND_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    python benchmarks/bench_ray.py                       # all 2,000 clips, the three targets
    python benchmarks/bench_ray.py --n-clips 400         # a subset (first N clips)

What it does: the configuration is ``configs/esc50.toml``; the run's probe table, training
curves and manifest (the recorded precision choice) are copied from ``--source`` (a finished
ESC-50 run, default ``runs/esc50``; only read) into a temporary run, so the targets load from
the content cache (trained weights and log-mel features must be there: run the ESC-50
reproduction once; the entries the stage reads are hard-linked into a private cache, so the
shared cache is only read). Both engines get the same loaded targets before timing; then
``stage_record`` runs with the local engine (torch on every CPU of this process) and with the
Ray engine (a local cluster of ``--cpus`` CPUs, one single-threaded actor per CPU,
``partition_clips`` 512; the actors read their rows of the cached log-mel features, or with
``--featurize`` load, resample and featurize their clips; the Ray driver loads no inputs), in
the order ``--order``, and the ratio Ray / local of the stage's wall
time is reported. The Ray cluster's start-up (``ray.init``) is timed apart: a run pays it once,
whatever its size. The files both engines wrote are compared byte for byte.

``--n-clips`` keeps the first N clips of the probe (the targets are still the full run's; their
inputs are sliced after loading), for machines where 2 x the full stage is too slow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from and_toolkit.cache import Cache
from and_toolkit.config import ExecutionSection, RunConfig, load_config
from and_toolkit.pipeline.context import Context
from and_toolkit.pipeline.model_stages import stage_record
from and_toolkit.pipeline.targets import inputs_of, load_target
from and_toolkit.run import Run

ROOT = Path(__file__).resolve().parents[1]


CACHE_NAMESPACES = ("features", "weights", "curves", "machine")
"""What the record stage reads from the content cache (hard-linked into a private cache, so the
shared cache is only read: entries are replaced by rename, never written in place)."""


class _FeaturizingCache(Cache):
    """A cache whose features entry is not offered to record workers (``--featurize``): they
    load, resample and featurize their clips instead of reading the cached rows."""

    def verified_path(self, namespace: str, key: str, chunk: int = 1 << 22) -> Path | None:
        return None if namespace == "features" else super().verified_path(namespace, key, chunk)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem
        shutil.copy2(src, dst)


def _private_cache(root: Path) -> Path:
    for name in CACHE_NAMESPACES:
        if (Cache().root / name).is_dir():
            shutil.copytree(Cache().root / name, root / name, copy_function=_link_or_copy)
    return root


def _context(cfg: RunConfig, root: Path, source: Path, n_clips: int | None, cache: Cache,
             preload: bool) -> Context:
    """A run at ``root`` holding ``source``'s probe / training / manifest, targets loaded
    (``preload``: and their inputs loaded on this driver, as the local engine needs them),
    sliced to the first ``n_clips`` clips."""
    root.mkdir(parents=True)
    for name in ("probe.parquet", "training.parquet", "manifest.json"):
        shutil.copyfile(source / name, root / name)
    ctx = Context(cfg=cfg, run=Run.at(root), cache=cache, progress=False)
    for target in cfg.targets:
        loaded = load_target(ctx, target)
        if preload:
            inputs_of(ctx, loaded.train_config)
    if n_clips is not None:  # after loading: the weights key was computed on the full probe
        ctx._probe = ctx.probe().head(n_clips)
        if ctx._features is not None:
            ctx._features = ctx._features[:n_clips]
        if ctx._waveform_matrix is not None:
            ctx._waveform_matrix = ctx._waveform_matrix[:n_clips]
    return ctx


def _timed_record(ctx: Context) -> dict[str, Any]:
    start = time.perf_counter()
    info = stage_record(ctx)
    wall = time.perf_counter() - start
    ctx.close()
    return {"wall_s": round(wall, 2),
            "per_target_wall_s": {t.id: info[t.id]["resources"]["wall_s"]
                                  for t in ctx.cfg.targets},
            "execution": info["_execution"]}


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "activations").rglob("*.parquet"))}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT / "runs" / "esc50")
    parser.add_argument("--n-clips", type=int, default=None, help="first N clips (default all)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--order", choices=["local-first", "ray-first"], default="local-first")
    parser.add_argument("--featurize", action="store_true",
                        help="record actors featurize their clips instead of reading the "
                             "cached features' rows")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ray.json")
    args = parser.parse_args()
    import ray
    import torch

    load_start = [round(x, 2) for x in os.getloadavg()]

    cfg = load_config(ROOT / "configs" / "esc50.toml")
    ray_cfg = cfg.model_copy(update={"execution": ExecutionSection(
        engine="ray", stages={"record": {"num_cpus": 1.0, "workers": args.cpus}})})
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache_root = _private_cache(Path(tmp) / "cache")
        # the local context first: it loads the features (the local engine's input) and
        # memoises their hash; the Ray driver then finds its weights keys without them
        local_ctx = _context(cfg, Path(tmp) / "local", args.source, args.n_clips,
                             Cache(cache_root), preload=True)
        ray_cache = _FeaturizingCache(cache_root) if args.featurize else Cache(cache_root)
        ctx = {"local": local_ctx,
               "ray": _context(ray_cfg, Path(tmp) / "ray", args.source, args.n_clips,
                               ray_cache, preload=False)}
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        init_s = time.perf_counter() - start
        order = ["local", "ray"] if args.order == "local-first" else ["ray", "local"]
        for name in order:
            results[name] = _timed_record(ctx[name])
            print(f"{name}: {results[name]['wall_s']:.1f} s", flush=True)
        driver_loaded = {"features": ctx["ray"]._features is not None,
                         "waveforms": ctx["ray"]._waveforms is not None}
        ray.shutdown()
        local, distributed = (_hashes(Path(tmp) / n) for n in ("local", "ray"))
    n = args.n_clips or 2000
    ratio = results["ray"]["wall_s"] / results["local"]["wall_s"]
    out = {
        "benchmark": "record stage (configs/esc50.toml: ast, ast-frozen, cnn; every chosen "
                     "layer, mean pooling), Ray engine vs local engine, same process",
        "command": "python benchmarks/bench_ray.py" + (
            f" --n-clips {args.n_clips}" if args.n_clips else "") + (
            " --featurize" if args.featurize else "") + (
            f" --order {args.order}" if args.order != "local-first" else ""),
        "n_clips": n, "order": order, "machine": {
            "cpus": os.cpu_count(), "torch_threads_local": torch.get_num_threads(),
            "cpu_model": _cpu_model(), "load_avg_at_start": load_start,
            "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(), "ray": ray.__version__},
        "ray_init_s": round(init_s, 2),
        "local": results["local"], "ray": results["ray"],
        "ray_record_inputs": "actors featurize their clips" if args.featurize else
                             "actors read their rows of the cached features (npy_rows)",
        "ray_driver_loaded_inputs": driver_loaded,
        "ratio_ray_over_local": round(ratio, 3),
        "goal": "ratio <= 1.3", "goal_met": ratio <= 1.3,
        "ratio_including_ray_init": round((results["ray"]["wall_s"] + init_s)
                                          / results["local"]["wall_s"], 3),
        "activation_files": len(local),
        "files_byte_identical": local == distributed,
        "per_clip_record_s": {name: round(results[name]["wall_s"] / n, 5)
                              for name in ("local", "ray")},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", "utf-8")
    print(json.dumps({k: out[k] for k in ("ratio_ray_over_local", "ray_init_s",
                                          "files_byte_identical")}))
    if not out["files_byte_identical"]:
        differ = sorted(k for k in local if local[k] != distributed.get(k))
        raise SystemExit(f"engines wrote different bytes: {differ[:5]}")


if __name__ == "__main__":
    main()
