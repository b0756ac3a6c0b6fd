"""Benchmark: what shortening Whisper's 30 s window to the clip's 5 s does, on a class subset.

The full fold-1 comparison needs 30 s embeddings of all 2,000 clips (hours on a shared 2-core
machine), so this measures the effect on ``--classes`` ESC-50 classes (seeded choice): the frozen
encoder's clip embeddings (mean over the frames that hold audio) at both windows, then

- the cosine similarity between a clip's 5 s and 30 s embeddings (how much the representation
  moves),
- the fold-1 accuracy of the same linear head recipe (``train_frozen_head``) on each window's
  embeddings, trained on folds 2-5 of the subset,
- the per-clip forward wall / CPU seconds of each window.

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 AND_DATA_DIR=../shared/data
    python benchmarks/bench_whisper_window.py --classes 6   # benchmarks/results/whisper_window.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf
import torch

from and_toolkit.targets.config import DEFAULT_TARGETS, build_model
from and_toolkit.targets.pretrained.head import train_frozen_head


class _Replay(torch.nn.Module):
    """Replays computed embeddings (input: clip indices [B, 1]): the head recipe, no re-run."""

    def __init__(self, emb: np.ndarray, n_classes: int) -> None:
        super().__init__()
        self.emb = emb
        self.classifier = torch.nn.Linear(emb.shape[1], n_classes)

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.emb[idx[:, 0].long().numpy()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/whisper_window.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(os.environ["AND_DATA_DIR"]) / "esc50"
    meta = pl.read_csv(root / "meta" / "esc50.csv").sort("filename")
    chosen = sorted(np.random.default_rng(args.seed).choice(50, args.classes, replace=False)
                    .tolist())
    meta = meta.filter(pl.col("target").is_in(chosen))
    waves = np.stack([sf.read(root / "audio" / f.replace(".wav", ".flac"), dtype="float32")[0]
                      for f in meta["filename"]])
    remap = {c: i for i, c in enumerate(chosen)}
    targets = np.array([remap[t] for t in meta["target"]])
    folds = meta["fold"].to_numpy()
    out: dict[str, Any] = {"classes": [meta.filter(pl.col("target") == c)["category"][0]
                                       for c in chosen],
                           "n_clips": len(waves), "n_test": int((folds == 1).sum()),
                           "threads": args.threads}
    embeddings = {}
    for seconds in (5.0, 30.0):
        cfg = DEFAULT_TARGETS["whisper-frozen"].model_copy(update={
            "whisper_window_seconds": seconds, "n_classes": args.classes})
        model = build_model(cfg).eval()
        load0 = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            emb = torch.cat([model.embed(torch.from_numpy(waves[i:i + 8]))  # type: ignore[operator]
                             for i in range(0, len(waves), 8)]).numpy()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        embeddings[seconds] = emb

        _, curve = train_frozen_head(_Replay(emb, args.classes), cfg, np.arange(len(emb), dtype=np.float32)[:, None],
                                     targets, folds)
        out[f"window_{seconds:g}s"] = {
            "forward_wall_s_per_clip": round(wall / len(waves), 4),
            "forward_cpu_s_per_clip": round(cpu / len(waves), 4),
            "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "fold1_accuracy": curve[-1]["test_accuracy"]}
    a, b = embeddings[5.0], embeddings[30.0]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    out["embedding_cosine_5s_vs_30s"] = {"mean": round(float(cos.mean()), 4),
                                        "min": round(float(cos.min()), 4)}
    out["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    Path(args.out).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
