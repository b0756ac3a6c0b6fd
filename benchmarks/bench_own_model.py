"""Benchmark: dissecting a user's model (``and-toolkit dissect`` recording path).

Two parts, results in ``benchmarks/results/own_model.json``:

* ``--part time``: a real-size AST (12 layers, 768 wide, ``ASTConfig()`` defaults, random
  weights, saved and loaded as a user's directory) on ESC-50 clips: record + write time vs a
  bare forward pass, in one run, batch-interleaved (a hook-free twin runs each batch just before
  the recording forward, so both see the same load on a shared machine). Audio loading and the
  feature extractor are timed separately and excluded from both sides. Goal: ratio <= 1.15.
* ``--part memory``: a small AST on N = 2,000 and 8,000 synthetic clips (seeded noise, made
  batch by batch), each N in a fresh process: peak RSS of the process and its growth during
  ``record_to_run``. Goal: peak RSS ratio (8,000 / 2,000) <= 1.2, i.e. memory does not follow N.

Usage::

    export AND_DATA_DIR=/work/shared/data HF_HUB_OFFLINE=1
    python benchmarks/bench_own_model.py                     # both parts, full size (slow)
    python benchmarks/bench_own_model.py --part time --n-clips 64
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
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

from and_toolkit.atomic import atomic_write_bytes
from and_toolkit.recording.hooks import DEFAULT_EXCLUDE, select_layers
from and_toolkit.recording.record import probe_sha256, record_to_run
from and_toolkit.run import Run

OUT = Path("benchmarks/results/own_model.json")


class PeakRSS:
    """Samples this process's RSS every 5 ms in a thread; ``peak`` in bytes."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start = self.peak = self.proc.memory_info().rss

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


class Clock:
    """Accumulated wall and CPU seconds."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._t, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._t
        self.cpu += time.process_time() - self._c


def _save_ast(out: Path, **config: Any) -> Path:
    import transformers as T

    torch.manual_seed(0)
    cfg = T.ASTConfig(**config)
    T.ASTModel(cfg).save_pretrained(out)
    T.ASTFeatureExtractor(num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length
                          ).save_pretrained(out)
    return out


def _layers(ext: Any) -> list[str]:
    return select_layers(ext.module, types=ext.types, exclude=[*DEFAULT_EXCLUDE, *ext.exclude])


def part_time(n_clips: int, batch_size: int) -> dict[str, Any]:
    from and_toolkit.probe.audio import load_audio
    from and_toolkit.probe.esc50 import esc50_data_dir, esc50_probe
    from and_toolkit.targets.external import load_pretrained

    root = esc50_data_dir()
    probe = esc50_probe(root).head(n_clips)
    paths = probe["path"].to_list()
    with tempfile.TemporaryDirectory(prefix="bench-own-") as tmp:
        ext = load_pretrained(_save_ast(Path(tmp) / "ast"))  # ASTConfig(): 12 x 768, 1024 x 128
        layers = _layers(ext)
        twin = copy.deepcopy(ext.module).eval()
        bare, prep = Clock(), Clock()

        def feed(items: list[str]) -> Iterator[Any]:
            for i in range(0, len(items), batch_size):
                with prep:
                    waves = [load_audio(root / p, ext.sample_rate, True, downmix=True)
                             for p in items[i:i + batch_size]]
                    batch = ext.prepare(waves)
                with bare, torch.inference_mode():
                    twin(**batch.inputs)
                yield batch.inputs, batch.frames

        warm = paths[:batch_size]
        record_to_run(ext.module, feed(warm), layers, "mean", Run.at(Path(tmp) / "warm"), "ast",
                      "warm", n_clips=len(warm), progress=False)
        bare, prep = Clock(), Clock()
        load = [os.getloadavg()[0]]
        with Clock() as total:
            written = record_to_run(ext.module, feed(paths), layers, "mean",
                                    Run.at(Path(tmp) / "run"), "ast",
                                    probe_sha256(probe["clip_id"].to_list()),
                                    n_clips=len(paths), progress=False)
        load.append(os.getloadavg()[0])
        size = sum(p.stat().st_size for p in written.values())
    rec_wall = total.wall - bare.wall - prep.wall
    rec_cpu = total.cpu - bare.cpu - prep.cpu
    return {
        "model": "AST, transformers ASTConfig() defaults (12 layers, hidden 768, 1024 frames x "
                 "128 mel bins), random weights, loaded from a saved directory",
        "n_clips": len(paths), "batch_size": batch_size, "layers": len(layers),
        "neurons": int(sum(ext.module.get_submodule(x).out_features for x in layers)),
        "parquet_mib": round(size / 2**20, 2),
        "audio_and_features_wall_s": round(prep.wall, 2),
        "bare_wall_s": round(bare.wall, 2), "bare_cpu_s": round(bare.cpu, 2),
        "record_wall_s": round(rec_wall, 2), "record_cpu_s": round(rec_cpu, 2),
        "wall_ratio": round(rec_wall / bare.wall, 3), "cpu_ratio": round(rec_cpu / bare.cpu, 3),
        "goal_ratio": 1.15, "loadavg_1min_before_after": load,
    }


def _memory_child(n_clips: int, batch_size: int, model_dir: str) -> dict[str, Any]:
    """One N in this (fresh) process: record synthetic clips, report RSS."""
    from and_toolkit.targets.external import batches_of, load_pretrained

    ext = load_pretrained(model_dir)
    layers = _layers(ext)
    rng = np.random.default_rng(0)

    def clips() -> Iterator[np.ndarray]:
        for _ in range(n_clips):
            yield (0.1 * rng.standard_normal(ext.sample_rate)).astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        with PeakRSS() as mem, Clock() as clock:
            record_to_run(ext.module, ((b.inputs, b.frames) for b in batches_of(
                ext, clips(), batch_size)), layers, "mean", Run.at(Path(tmp) / "run"), "ast",
                "synthetic", n_clips=n_clips, progress=False)
    width = int(sum(ext.module.get_submodule(x).out_features for x in layers))
    return {"n_clips": n_clips, "neurons": width, "wall_s": round(clock.wall, 1),
            "rss_start_mib": round(mem.start / 2**20, 1),
            "peak_rss_mib": round(mem.peak / 2**20, 1),
            "growth_mib": round((mem.peak - mem.start) / 2**20, 1),
            "activation_matrix_mib": round(n_clips * width * 4 / 2**20, 1)}


def part_memory(sizes: list[int], batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mem-model-") as tmp:
        model_dir = _save_ast(Path(tmp) / "ast", hidden_size=192, num_hidden_layers=4,
                              num_attention_heads=4, intermediate_size=768, max_length=128,
                              num_mel_bins=64)
        runs = []
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(n), "--batch-size",
                 str(batch_size), "--model-dir", str(model_dir)],
                check=True, capture_output=True, text=True, env=os.environ.copy())
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(runs[-1], flush=True)
    small, large = runs[0], runs[-1]
    return {
        "model": "AST (4 layers, hidden 192, intermediate 768, 128 frames x 64 mel bins), "
                 "random weights, from a saved directory",
        "clips": "1 s of seeded white noise at 16 kHz each, generated batch by batch",
        "batch_size": batch_size, "runs": runs,
        "peak_rss_ratio": round(large["peak_rss_mib"] / small["peak_rss_mib"], 3),
        "growth_ratio": round(large["growth_mib"] / max(small["growth_mib"], 1e-9), 3),
        "goal_ratio": 1.2,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--part", choices=["time", "memory", "both"], default="both")
    ap.add_argument("--n-clips", type=int, default=2000, help="ESC-50 clips for --part time")
    ap.add_argument("--sizes", default="2000,8000", help="probe sizes for --part memory")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.memory_child is not None:
        print(json.dumps(_memory_child(args.memory_child, args.batch_size, args.model_dir)))
        return 0
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "python": platform.python_version(), "torch": torch.__version__}
    if args.part in ("time", "both"):
        result["time"] = {**part_time(args.n_clips, args.batch_size), **machine,
                          "command": " ".join(["python", *sys.argv])}
        print(json.dumps(result["time"], indent=1), flush=True)
    if args.part in ("memory", "both"):
        sizes = [int(s) for s in args.sizes.split(",")]
        result["memory"] = {**part_memory(sizes, args.batch_size), **machine,
                            "command": " ".join(["python", *sys.argv])}
        print(json.dumps(result["memory"], indent=1), flush=True)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(args.out, lambda tmp: tmp.write_text(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
