"""Benchmark: recording all chosen layers vs a bare forward pass over the same ESC-50 clips.

Goals (design §8): hooks + pooling + Parquet writing cost at most 15% over a bare forward pass
(ratio <= 1.15) and the peak RSS growth while recording stays within 1.5x the float32 activation
matrix [N, total width].

Usage::

    export AND_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1
    python benchmarks/bench_recording.py --model ast            # all 2000 clips
    python benchmarks/bench_recording.py --model cnn --n-clips 256 --repeats 1

Peak RSS is sampled every 5 ms; the memory attributable to recording is the RSS growth of a
recording pass minus that of the bare pass (forward-pass transients are the same in both) and is
compared with the matrix. Wall and CPU-time ratios are both reported (wall time is noisy on a
shared machine). Both passes run in the same process on the same precomputed log-mel features (cached under
``--cache`` with the key scheme of ``benchmarks/train_targets.py``), alternating
bare / record ``--repeats`` times; the ratio uses the fastest pass of each kind. If the trained
weights of the model are not in ``--cache``, the same architecture is randomly initialised
(recording cost does not depend on the weights) and the output says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.probe.audio import load_clips
from and_toolkit.probe.esc50 import esc50_data_dir, esc50_probe
from and_toolkit.recording.hooks import module_width, select_layers
from and_toolkit.recording.record import probe_sha256, record_to_run


class PeakRSS:
    """Samples this process's RSS in a background thread; ``peak`` is the max seen, bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def features_for(paths: list[str], root: Path, cache: Path) -> tuple[np.ndarray, str]:
    """Log-mel features [N, 512, 64] of the clips, cached by config + file names."""
    from and_toolkit.targets import FeatureConfig, logmel_features

    cfg = FeatureConfig()  # type: ignore[call-arg]  # pydantic defaults; no mypy plugin
    key = hashlib.sha256(
        (cfg.model_dump_json() + "\n" + "\n".join(Path(p).name for p in paths)).encode()
    ).hexdigest()[:20]
    file = cache / f"features-{key}.npy"
    if file.exists():
        return np.load(file), f"cache {file}"
    t0 = time.perf_counter()
    feats = logmel_features(load_clips(root, paths, cfg.sample_rate), cfg)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(file, lambda tmp: np.save(open(tmp, "wb"), feats))
    return feats, f"computed in {time.perf_counter() - t0:.1f} s, cached to {file}"


def build_target(name: str, feats: np.ndarray, targets: np.ndarray, folds: np.ndarray,
                 cache: Path) -> tuple[nn.Module, str]:
    """The supervised target: trained weights from ``cache`` if present, else random init."""
    from and_toolkit.targets import (
        DEFAULT_TARGETS,
        build_model,
        features_sha,
        labels_sha,
        load_weights,
        weights_key,
    )

    cfg = DEFAULT_TARGETS[name]
    model = build_model(cfg)
    key = weights_key(cfg, features_sha(feats), labels_sha(targets, folds))
    file = cache / f"weights-{name}-{key[:16]}.safetensors"
    if file.is_file():
        load_weights(model, file)
        return model.eval(), f"trained weights {file}"
    return model.eval(), (f"randomly initialised (no trained weights at {file}); recording cost "
                          "does not depend on the weights")


def batches(feats: np.ndarray, bs: int) -> Iterator[torch.Tensor]:
    for i in range(0, feats.shape[0], bs):
        yield torch.from_numpy(feats[i:i + bs])


def bare_pass(model: nn.Module, feats: np.ndarray, bs: int) -> None:
    model.eval()
    with torch.inference_mode():
        for x in batches(feats, bs):
            model(x)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", choices=["ast", "cnn"], default="ast",
                    help="supervised target to record (default: ast)")
    ap.add_argument("--n-clips", type=int, default=2000, help="first N ESC-50 clips (max 2000)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2, help="bare/record pairs (min is used)")
    ap.add_argument("--pooling", default="cls", choices=["cls", "first", "mean", "max"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/and-targets"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/recording.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    root = esc50_data_dir()
    probe = esc50_probe(root)
    all_paths = probe["path"].to_list()
    feats_all, feats_note = features_for(all_paths, root, args.cache)
    targets = probe["target"].to_numpy().astype(np.int64)
    folds = probe["fold"].to_numpy().astype(np.int64)
    model, weights_note = build_target(args.model, feats_all, targets, folds, args.cache)
    n = min(args.n_clips, feats_all.shape[0])
    feats = np.ascontiguousarray(feats_all[:n])
    del feats_all
    clip_ids = probe["clip_id"].to_list()[:n]

    layers = select_layers(model)
    modules = dict(model.named_modules())
    widths = {layer: module_width(modules[layer]) or 0 for layer in layers}
    total_width = sum(widths.values())
    matrix_bytes = n * total_width * 4
    print(f"{args.model}: {len(layers)} layers, {total_width} units, N={n}, "
          f"matrix {matrix_bytes / 2**20:.1f} MiB, {weights_note}", flush=True)

    bare_pass(model, feats[: args.batch_size], args.batch_size)  # warm-up
    times: dict[str, list[float]] = {"bare": [], "record": []}
    cpu: dict[str, list[float]] = {"bare": [], "record": []}
    growth: dict[str, list[int]] = {"bare": [], "record": []}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        for rep in range(args.repeats):
            with PeakRSS() as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                bare_pass(model, feats, args.batch_size)
                times["bare"].append(time.perf_counter() - t0)
                cpu["bare"].append(time.process_time() - c0)
            growth["bare"].append(mem.peak - mem.start)
            with PeakRSS() as mem:
                t0, c0 = time.perf_counter(), time.process_time()
                written = record_to_run(
                    model, batches(feats, args.batch_size), layers, args.pooling,
                    Path(tmp) / f"rep{rep}", args.model, probe_sha256(clip_ids),
                    n_clips=n, progress=False,
                )
                times["record"].append(time.perf_counter() - t0)
                cpu["record"].append(time.process_time() - c0)
            growth["record"].append(mem.peak - mem.start)
            size = sum(p.stat().st_size for p in written.values())
            print(f"rep {rep}: bare {times['bare'][-1]:.1f} s (cpu {cpu['bare'][-1]:.1f} s), "
                  f"record+write {times['record'][-1]:.1f} s (cpu {cpu['record'][-1]:.1f} s), "
                  f"RSS growth record "
                  f"{growth['record'][-1] / 2**20:.1f} MiB (bare "
                  f"{growth['bare'][-1] / 2**20:.1f} MiB), parquet {size / 2**20:.1f} MiB",
                  flush=True)
            load.append(os.getloadavg()[0])

    ratio = min(times["record"]) / min(times["bare"])
    cpu_ratio = min(cpu["record"]) / min(cpu["bare"])
    # memory attributable to recording: growth while recording minus growth of the bare pass
    extra = max(r - b for r, b in zip(growth["record"], growth["bare"], strict=True))
    mem_ratio = max(0, extra) / matrix_bytes
    result: dict[str, Any] = {
        "model": args.model,
        "weights": weights_note,
        "n_clips": n,
        "batch_size": args.batch_size,
        "pooling": args.pooling,
        "layers": len(layers),
        "units": total_width,
        "matrix_mib": round(matrix_bytes / 2**20, 2),
        "parquet_mib": round(size / 2**20, 2),
        "bare_seconds": [round(t, 2) for t in times["bare"]],
        "record_seconds": [round(t, 2) for t in times["record"]],
        "time_ratio_min": round(ratio, 3),
        "time_ratio_median": round(
            statistics.median(times["record"]) / statistics.median(times["bare"]), 3),
        "bare_cpu_seconds": [round(t, 2) for t in cpu["bare"]],
        "record_cpu_seconds": [round(t, 2) for t in cpu["record"]],
        "cpu_ratio_min": round(cpu_ratio, 3),
        "time_goal": 1.15,
        "rss_growth_record_mib": [round(g / 2**20, 1) for g in growth["record"]],
        "rss_growth_bare_mib": [round(g / 2**20, 1) for g in growth["bare"]],
        "rss_extra_over_bare_mib": round(extra / 2**20, 1),
        "rss_extra_over_matrix": round(mem_ratio, 3),
        "rss_goal": 1.5,
        "features": feats_note,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": [round(x, 2) for x in load],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    print(json.dumps(result, indent=2), flush=True)
    existing: dict[str, Any] = {}
    if args.out.is_file():
        try:
            existing = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            existing = {}
    existing[args.model] = result
    atomic_write_bytes(args.out, lambda tmp: tmp.write_text(
        json.dumps(existing, indent=2, sort_keys=True) + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
