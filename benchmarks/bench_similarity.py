"""Benchmark of Module A's similarity functions (design §8, reference-spec §13 items 3-4).

(a) all five functions over 55,296 neurons x 2000 clips x 50 concepts (synthetic, fixed seed):
    wall time and peak memory (goal <= 30 s, < 4 GiB on 2 cores);
(b) one 3072-unit layer: vectorised vs per-neuron loop, time ratio (goal >= 5x) and max abs
    difference (goal <= 1e-5; also reported relative to max(1, |score|));
(c) text-encoder inputs: distinct captions + concept names vs the authors' per-neuron encodes.

Usage: python benchmarks/bench_similarity.py [--out benchmarks/results/similarity.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import torch

from and_toolkit.dissect import similarity as S
from and_toolkit.dissect import similarity_reference as R
from and_toolkit.dissect.closed import db_evidence, distinct_texts

GIB = 2**30


class PeakRss:
    """Samples this process's RSS every ``interval`` s in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak = interval, 0
        self._proc, self._stop = psutil.Process(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def synthetic(n_neurons: int, n_clips: int, n_concepts: int, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """DB-like evidence P [N, M] and activations U [N, n] (a view of a neuron-major array).

    Neurons mix concept evidence with noise; every third neuron is ReLU-rectified so that
    tied activations (zeros) exercise the deterministic tie-break path.
    """
    g = torch.Generator().manual_seed(seed)
    P = db_evidence(torch.randn(n_clips, 64, generator=g), torch.randn(n_concepts, 64, generator=g))
    U = torch.randn(n_neurons, n_clips, generator=g)  # neuron-major, as ActivationTable stores
    mix = torch.randn(n_neurons, n_concepts, generator=g)
    for j0 in range(0, n_neurons, 8192):
        j1 = min(j0 + 8192, n_neurons)
        U[j0:j1] += 3 * (mix[j0:j1] @ P.T)
    U[::3].clamp_(min=0)
    return P, U.T


def time_call(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result) of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def time_one(P: torch.Tensor, U: torch.Tensor, name: str, chunk: int
             ) -> tuple[float, float, torch.Tensor]:
    """Wall seconds, CPU seconds and scores of one vectorised function."""
    return time_call(lambda: S.similarities(
        P, U, names=[name], population="per_layer", chunk_size=chunk)[name])


def part_a(P: torch.Tensor, U: torch.Tensor, chunk: int) -> dict[str, Any]:
    rss0 = psutil.Process().memory_info().rss
    with PeakRss() as peak:
        seconds, cpu, out = time_call(lambda: S.similarities(
            P, U, population="per_layer", chunk_size=chunk))
    per_fn = {}
    for name in S.SIMILARITY_NAMES:
        per_fn[name] = round(time_one(P, U, name, chunk)[0], 3)
    return {
        "neurons": U.shape[1], "clips": P.shape[0], "concepts": P.shape[1], "chunk_size": chunk,
        "seconds_all_five": round(seconds, 3), "cpu_seconds_all_five": round(cpu, 3),
        "seconds_per_function_separately": per_fn,
        "rss_before_gib": round(rss0 / GIB, 3), "peak_rss_gib": round(peak.peak / GIB, 3),
        "peak_rss_above_inputs_gib": round((peak.peak - rss0) / GIB, 3),
        "ru_maxrss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 3),
        "nan_counts": {k: int(v.isnan().sum()) for k, v in out.items()},
        "goal": "<= 30 s and < 4 GiB on 2 cores",
    }


def part_b(P: torch.Tensor, U: torch.Tensor, chunk: int) -> dict[str, Any]:
    loops: dict[str, Callable[[], torch.Tensor]] = {
        "cos": lambda: R.cos_loop(P, U), "cos_cubed": lambda: R.cos_cubed_loop(P, U),
        "rank_reorder": lambda: R.rank_reorder_loop(P, U),
        "wpmi": lambda: R.wpmi_loop(P, U, population="per_layer"),
        "soft_wpmi": lambda: R.soft_wpmi_loop(P, U, population="per_layer"),
    }
    rows, t_vec_total, t_loop_total, c_loop_total = {}, 0.0, 0.0, 0.0
    t_fused, c_fused, _ = time_call(
        lambda: S.similarities(P, U, population="per_layer", chunk_size=chunk))
    for name, loop in loops.items():
        t_vec, c_vec, vec = time_one(P, U, name, chunk)
        t_loop, c_loop, ref = time_call(loop)
        both_nan = vec.isnan() & ref.isnan()
        diff = (vec - ref).abs().masked_fill(both_nan, 0.0)
        rows[name] = {
            "seconds_vectorised": round(t_vec, 4), "seconds_loop": round(t_loop, 4),
            "speedup": round(t_loop / t_vec, 1), "cpu_seconds_vectorised": round(c_vec, 4),
            "cpu_seconds_loop": round(c_loop, 4), "cpu_speedup": round(c_loop / c_vec, 1),
            "max_abs_diff": float(diff.max()),
            "max_diff_rel_to_max1_abs": float((diff / ref.abs().clamp(min=1)).max()),
            "max_abs_score": float(ref.abs().nan_to_num(0).max()),
            "nan_mismatch": int((vec.isnan() ^ ref.isnan()).sum()),
        }
        t_vec_total, t_loop_total = t_vec_total + t_vec, t_loop_total + t_loop
        c_loop_total += c_loop
    return {
        "neurons": U.shape[1], "per_function": rows,
        "seconds_vectorised_fused_all_five": round(t_fused, 3),
        "seconds_loop_all_five": round(t_loop_total, 3),
        "speedup_fused_vs_loop": round(t_loop_total / t_fused, 1),
        "cpu_seconds_fused_all_five": round(c_fused, 3),
        "cpu_seconds_loop_all_five": round(c_loop_total, 3),
        "cpu_speedup_fused_vs_loop": round(c_loop_total / c_fused, 1),
        "speedup_separate_vs_loop": round(t_loop_total / t_vec_total, 1),
        "max_abs_diff": max(r["max_abs_diff"] for r in rows.values()),
        "goal": "speedup >= 5x, max abs diff <= 1e-5",
    }


def part_c(n_neurons: int, n_fc: int, n_clips: int, k_hidden: int) -> dict[str, Any]:
    data = Path(os.environ.get("AND_DATA_DIR", "")) / "esc50"
    captions_csv = data / "captions" / "qwen2-audio-7b-instruct.csv"
    if captions_csv.is_file() and (data / "meta" / "esc50.csv").is_file():
        with captions_csv.open(newline="") as f:
            captions = [row["caption"] for row in csv.DictReader(f)]
        with (data / "meta" / "esc50.csv").open(newline="") as f:
            concepts = sorted({row["category"] for row in csv.DictReader(f)})
        source = "ESC-50 Qwen2-Audio captions + ESC-50 class names"
    else:
        captions = [f"caption {i % 1500}" for i in range(n_clips)]
        concepts = [f"concept {i}" for i in range(50)]
        source = "synthetic (AND_DATA_DIR not set)"
    unique_caps, _ = distinct_texts(captions)
    unique_concepts, _ = distinct_texts(concepts)
    n_fns, m, n_hidden = 5, len(concepts), n_neurons - n_fc
    authors_fc = n_fns * n_fc * len(captions)
    authors_hidden = n_fns * n_hidden * k_hidden
    return {
        "source": source, "captions": len(captions), "distinct_captions": len(unique_caps),
        "concepts": m, "distinct_concepts": len(unique_concepts),
        "encoder_inputs_ours": len(unique_caps) + len(unique_concepts),
        "caption_encodes_authors_db": {"fc": authors_fc, "hidden": authors_hidden,
                                       "total": authors_fc + authors_hidden},
        "note": "ours: every distinct caption and concept name once (closed.encode_distinct); "
                "authors' DB re-encodes a neuron's captions for every neuron and each of the 5 "
                f"functions (reference-spec §13.3): fc {n_fc} neurons x {len(captions)} "
                f"captions, hidden {n_hidden} neurons x {k_hidden} captions, concept names "
                "not counted",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/similarity.json"))
    ap.add_argument("--neurons", type=int, default=55_296)
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--concepts", type=int, default=50)
    ap.add_argument("--layer-units", type=int, default=3072)
    ap.add_argument("--chunk-size", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    P, U = synthetic(args.neurons, args.clips, args.concepts, args.seed)
    result = {
        "a_full_scale": part_a(P, U, args.chunk_size),
        "b_vectorised_vs_loop": part_b(P, U[:, : args.layer_units], args.chunk_size),
        "c_encoder_inputs": part_c(args.neurons, 50, args.clips, 5),
        "environment": {
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "load_average_before": [round(x, 2) for x in load0],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": "the machine is shared; a load average above the core count inflates times",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
