"""Benchmark: the pipeline's MiniLM on ONNX Runtime vs sentence-transformers on torch.

Texts: the demo's kind of descriptions at scale, i.e. the synthetic probe's captions and
summaries-like joins of them (built here, seeded), plus the real Qwen2-Audio captions of
ESC-50 when ``$AND_DATA_DIR`` has them. Both encoders embed the same texts in alternation
(``--rounds`` each, after one warm-up), so load on the shared machine hits both alike; the
result file has every round's seconds, the median ratio, the export and load seconds, and the
largest difference between the two embeddings.

ONNX Runtime picks its kernels from the CPU's instruction sets and has no switch to cap them,
so on an AVX-512 machine this compares its AVX-512 kernels with torch's (torch can be capped
with ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``; the figures say which was set).

Usage: python benchmarks/bench_minilm_onnx.py [--rounds 3] [--out benchmarks/results/minilm_onnx.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from and_toolkit.backends.encoders import MiniLMEncoder
from and_toolkit.backends.minilm_onnx import OnnxMiniLMEncoder, export_onnx
from and_toolkit.probe.synthetic import SyntheticConfig, synthetic_probe

ROOT = Path(__file__).resolve().parents[1]


def texts() -> tuple[list[str], dict[str, int]]:
    """Distinct texts to embed and how many came from each source."""
    caps = sorted(set(synthetic_probe(SyntheticConfig(n_per_class=8)).captions.values()))
    rng = random.Random(0)
    # summaries are joins of 2-5 caption sentences (the demo's SUM descriptions)
    joins = sorted({" ".join(rng.sample(caps, rng.randint(2, 5))) for _ in range(2000)})
    out = caps + joins
    counts = {"synthetic_captions": len(caps), "synthetic_joins": len(joins)}
    data = os.environ.get("AND_DATA_DIR")
    path = Path(data) / "esc50" / "captions" / "qwen2-audio-7b-instruct.csv" if data else None
    if path is not None and path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            esc = sorted({row["caption"] for row in csv.DictReader(f) if row.get("caption")})
        out += esc
        counts["esc50_qwen2_audio_captions"] = len(esc)
    return list(dict.fromkeys(out)), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/minilm_onnx.json"))
    args = parser.parse_args()
    items, counts = texts()
    load_before = os.getloadavg()
    t = time.perf_counter()
    onnx = export_onnx()
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    ort_enc = OnnxMiniLMEncoder.load(onnx)
    ort_load_s = time.perf_counter() - t
    t = time.perf_counter()
    st_enc = MiniLMEncoder.load()
    st_load_s = time.perf_counter() - t
    ort_enc.encode(items[:64])
    st_enc.encode(items[:64])
    seconds: dict[str, list[float]] = {"onnxruntime": [], "sentence_transformers": []}
    emb: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, enc in (("onnxruntime", ort_enc), ("sentence_transformers", st_enc)):
            t = time.perf_counter()
            emb[name] = enc.encode(items)
            seconds[name].append(round(time.perf_counter() - t, 3))
    ratios = [s / o for s, o in zip(seconds["sentence_transformers"], seconds["onnxruntime"],
                                    strict=True)]
    diff = np.abs(emb["onnxruntime"] - emb["sentence_transformers"])
    result: dict[str, Any] = {
        "benchmark": "minilm_onnx",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "texts": {"distinct": len(items), "characters": sum(len(x) for x in items), **counts},
        "encoders": {"onnxruntime": ort_enc.id, "sentence_transformers": st_enc.id},
        "threads": {"torch": torch.get_num_threads(),
                    "onnxruntime_intra_op": torch.get_num_threads()},
        "export_s": round(export_s, 2), "load_s": {"onnxruntime": round(ort_load_s, 2),
                                                   "sentence_transformers": round(st_load_s, 2)},
        "encode_s": seconds,
        "speedup_per_round": [round(r, 2) for r in ratios],
        "median_speedup": round(statistics.median(ratios), 2),
        "max_abs_difference": float(diff.max()),
        "min_cosine": float((emb["onnxruntime"] * emb["sentence_transformers"]).sum(1).min()),
        "torch_kernels_capped": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY",
                                                            "ONEDNN_MAX_CPU_ISA")
                                 if k in os.environ},
        "machine": {"cpu_model": _cpu_model(), "cores": len(os.sched_getaffinity(0)),
                    "load_average_1_5_15_before": list(load_before),
                    "load_average_1_5_15_after": list(os.getloadavg())},
        "note": "both encoders embed the same distinct texts in alternation; ONNX Runtime's "
                "kernels cannot be capped at an instruction set",
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("median_speedup", "encode_s",
                                             "max_abs_difference")}))


def _cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return "unknown"


if __name__ == "__main__":
    main()
