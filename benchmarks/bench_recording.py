"""Benchmark: recording all chosen layers vs a bare forward pass over the same ESC-50 clips.

Goals (design §8): hooks + pooling + Parquet writing cost at most 15% over a bare forward pass
(ratio <= 1.15) and the peak RSS growth while recording stays within 1.5x the float32 activation
matrix [N, total width].

Usage::

    export AND_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1
    python benchmarks/bench_recording.py --model ast            # all 2000 clips
    python benchmarks/bench_recording.py --model cnn --n-clips 256

Everything runs in one process on the same precomputed log-mel features (cached under
``--cache`` with the key scheme of ``benchmarks/train_targets.py``), after a warm-up.

* Time, batch-interleaved (the headline ratio): one ``record_to_run`` pass whose batch iterator
  first runs a hook-free deep copy of the model on each batch, so the bare and the recording
  forward alternate batch by batch and see the same load on a shared machine. Ratio =
  (record_to_run time - twin time) / twin time, for wall and CPU time.
* Memory, sequential: a bare pass then a ``record_to_run`` pass, peak RSS sampled every 5 ms;
  the memory attributable to recording is the record pass's RSS growth minus the bare pass's
  (forward-pass transients are in both), compared with the float32 activation matrix. The
  sequential wall / CPU ratio is reported too.

If the trained weights of the model are not in ``--cache``, the same architecture is randomly
initialised (recording cost does not depend on the weights) and the output says so.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
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
from and_toolkit.run import Run


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
        resolve_train_config,
        weights_key,
    )

    cfg, _ = resolve_train_config(DEFAULT_TARGETS[name])
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
    """Forward every batch once, outputs discarded (the baseline)."""
    model.eval()
    with torch.inference_mode():
        for x in batches(feats, bs):
            model(x)


class Clock:
    """Accumulated wall and CPU seconds (CPU = all threads of this process)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._t, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._t
        self.cpu += time.process_time() - self._c


def interleaved(
    model: nn.Module, feats: np.ndarray, bs: int, layers: list[str], pooling: str,
    out: Path, model_id: str, sha: str,
) -> tuple[Clock, Clock, int]:
    """One ``record_to_run`` pass whose batch iterator first runs a hook-free twin on the batch.

    Bare and recording work alternate batch by batch, so both see the same machine load.

    Returns:
        (clock of the bare twin forwards, clock of the whole record_to_run call incl. the twin,
        bytes written).
    """
    twin = copy.deepcopy(model).eval()
    bare = Clock()

    def feed() -> Iterator[torch.Tensor]:
        for x in batches(feats, bs):
            with bare, torch.inference_mode():
                twin(x)
            yield x

    with Clock() as total:
        written = record_to_run(model, feed(), layers, pooling, Run.at(out), model_id, sha,
                                n_clips=feats.shape[0], progress=False)
    return bare, total, sum(p.stat().st_size for p in written.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", choices=["ast", "cnn"], default="ast",
                    help="supervised target to record (default: ast)")
    ap.add_argument("--n-clips", type=int, default=2000, help="first N ESC-50 clips (max 2000)")
    ap.add_argument("--batch-size", type=int, default=32)
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
    feats_all, feats_note = features_for(probe["path"].to_list(), root, args.cache)
    targets = probe["target"].to_numpy().astype(np.int64)
    folds = probe["fold"].to_numpy().astype(np.int64)
    model, weights_note = build_target(args.model, feats_all, targets, folds, args.cache)
    n = min(args.n_clips, feats_all.shape[0])
    feats = np.ascontiguousarray(feats_all[:n])
    del feats_all
    sha = probe_sha256(probe["clip_id"].to_list()[:n])

    layers = select_layers(model)
    modules = dict(model.named_modules())
    total_width = sum(module_width(modules[layer]) or 0 for layer in layers)
    matrix_bytes = n * total_width * 4
    print(f"{args.model}: {len(layers)} layers, {total_width} units, N={n}, "
          f"matrix {matrix_bytes / 2**20:.1f} MiB, {weights_note}", flush=True)

    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        # warm-up: one-time library initialisation (kernels, Parquet writer, thread pools)
        warm = feats[: 2 * args.batch_size]
        bare_pass(model, warm, args.batch_size)
        record_to_run(model, batches(warm, args.batch_size), layers, args.pooling,
                      Run.at(Path(tmp) / "warm"), args.model, "warm-up", n_clips=warm.shape[0],
                      progress=False)
        # 1) sequential passes first, while the allocator holds no freed matrix: memory
        #    (and a second, load-sensitive time ratio)
        with PeakRSS() as mem_bare, Clock() as seq_bare:
            bare_pass(model, feats, args.batch_size)
        with PeakRSS() as mem_rec, Clock() as seq_rec:
            record_to_run(model, batches(feats, args.batch_size), layers, args.pooling,
                          Run.at(Path(tmp) / "sequential"), args.model, sha, n_clips=n, progress=False)
        load.append(os.getloadavg()[0])
        # 2) batch-interleaved timing (robust to the load of a shared machine)
        bare, total, size = interleaved(model, feats, args.batch_size, layers, args.pooling,
                                        Path(tmp) / "interleaved", args.model, sha)
        rec_wall, rec_cpu = total.wall - bare.wall, total.cpu - bare.cpu
        print(f"interleaved: bare {bare.wall:.1f} s (cpu {bare.cpu:.1f}), record+write "
              f"{rec_wall:.1f} s (cpu {rec_cpu:.1f}), parquet {size / 2**20:.1f} MiB", flush=True)
        load.append(os.getloadavg()[0])
    grow_bare = mem_bare.peak - mem_bare.start
    grow_rec = mem_rec.peak - mem_rec.start
    extra = max(0, grow_rec - grow_bare)
    print(f"sequential: bare {seq_bare.wall:.1f} s, record+write {seq_rec.wall:.1f} s; RSS growth "
          f"bare {grow_bare / 2**20:.1f} MiB, record {grow_rec / 2**20:.1f} MiB", flush=True)

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
        "interleaved": {
            "bare_wall_s": round(bare.wall, 2), "bare_cpu_s": round(bare.cpu, 2),
            "record_wall_s": round(rec_wall, 2), "record_cpu_s": round(rec_cpu, 2),
            "wall_ratio": round(rec_wall / bare.wall, 3),
            "cpu_ratio": round(rec_cpu / bare.cpu, 3),
        },
        "sequential": {
            "bare_wall_s": round(seq_bare.wall, 2), "bare_cpu_s": round(seq_bare.cpu, 2),
            "record_wall_s": round(seq_rec.wall, 2), "record_cpu_s": round(seq_rec.cpu, 2),
            "wall_ratio": round(seq_rec.wall / seq_bare.wall, 3),
            "cpu_ratio": round(seq_rec.cpu / seq_bare.cpu, 3),
            "rss_growth_bare_mib": round(grow_bare / 2**20, 1),
            "rss_growth_record_mib": round(grow_rec / 2**20, 1),
        },
        "time_goal": 1.15,
        "rss_extra_mib": round(extra / 2**20, 1),
        "rss_extra_over_matrix": round(extra / matrix_bytes, 3),
        "rss_goal": 1.5,
        "features": feats_note,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": [round(x, 2) for x in load],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(["python benchmarks/bench_recording.py", *(argv or sys.argv[1:])]),
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
