"""Benchmark: one training step of each target in float32 vs bf16 autocast, and the probe's choice.

For each architecture of ``DEFAULT_TARGETS`` at the ESC-50 sizes (features 512 frames x 64 mel,
batch 32, 50 classes) one optimiser step is timed: forward (under the precision's autocast),
soft cross-entropy in float32, backward, gradient clipping, AdamW step -- the body of
``train_target``'s loop without augmentation (which does not depend on the precision). Inputs
are random (speed does not depend on the values). After warm-up steps, fp32 and bf16 steps
alternate (order flipped every round, each precision on its own model copy and optimiser) for
at least ``--steps`` rounds and ``--min-seconds`` of timed wall time, so load on a shared
machine hits both alike; medians of wall and process-CPU seconds are reported
with the bf16/fp32 ratio (< 1: bf16 faster) and what the ``>= 1.25x`` rule would choose from
these full steps, next to what the start-up probe (``resolve_precision("auto")``) chose.

Unless ``--no-emulated``, the probe and the steps of ``--emulated-archs`` are re-run in
a subprocess with ``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2``: torch then computes bf16
without AVX-512-BF16/AMX, as on CPUs that emulate it, to check the probe picks fp32 there.

Usage::

    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    python benchmarks/bench_training_step.py                 # writes benchmarks/results/training_step.json
    python benchmarks/bench_training_step.py --archs cnn --steps 2 --out /tmp/ts.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from and_toolkit.targets import DEFAULT_TARGETS, build_model, logits_of
from and_toolkit.targets.precision import ENV_PRECISION, choose_precision, resolve_precision
from and_toolkit.targets.timing import autocast, usable_cores

EMULATION_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                 "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def make_step(model: nn.Module, precision: str, x: torch.Tensor, soft: torch.Tensor,
              weight_decay: float, grad_clip: float | None) -> Callable[[], float]:
    """One optimiser step of ``model`` on (x [B, T, F], soft labels [B, C]); returns the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=weight_decay)

    def step() -> float:
        with autocast(precision):
            logits = logits_of(model, x)
        loss = -(soft * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        return float(loss.detach())

    return step


def time_arch(name: str, steps: int, warmup: int, batch: int, min_seconds: float,
              max_steps: int = 60) -> dict[str, Any]:
    """Interleaved fp32 / bf16 training steps of ``DEFAULT_TARGETS[name]``; seconds per step.

    Timed rounds (one step of each precision) continue until ``steps`` rounds and
    ``min_seconds`` of timed wall time, or ``max_steps`` rounds.
    """
    cfg = DEFAULT_TARGETS[name].model_copy(update={"precision": "fp32"})
    frames = cfg.ast.max_length  # 512, as FeatureConfig's (the CNN takes any length)
    mel = cfg.ast.num_mel_bins if name.startswith("ast") else cfg.cnn.num_mel_bins
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, frames, mel, generator=gen)
    y = torch.randint(0, cfg.n_classes, (batch,), generator=gen)
    soft = torch.eye(cfg.n_classes)[y]
    base = build_model(cfg).train()
    trained = sum(p.numel() for p in base.parameters() if p.requires_grad)
    fns = {p: make_step(copy.deepcopy(base), p, x, soft, cfg.weight_decay, cfg.grad_clip)
           for p in ("fp32", "bf16")}
    wall: dict[str, list[float]] = {p: [] for p in fns}
    cpu: dict[str, list[float]] = {p: [] for p in fns}
    losses: dict[str, float] = {}
    load0 = os.getloadavg()[0]
    rnd = 0
    while rnd < warmup + steps or (
        sum(wall["fp32"]) + sum(wall["bf16"]) < min_seconds and rnd < warmup + max_steps
    ):
        for p in ("fp32", "bf16") if rnd % 2 == 0 else ("bf16", "fp32"):
            t0, c0 = time.perf_counter(), time.process_time()
            losses[p] = fns[p]()
            if rnd >= warmup:
                wall[p].append(time.perf_counter() - t0)
                cpu[p].append(time.process_time() - c0)
        rnd += 1
    med = {p: statistics.median(wall[p]) for p in fns}
    cmed = {p: statistics.median(cpu[p]) for p in fns}
    out = {
        "input": [batch, frames, mel], "trained_params": trained, "warmup_steps": warmup,
        "steps_each": len(wall["fp32"]),
        "fp32_s_per_step": round(med["fp32"], 4), "bf16_s_per_step": round(med["bf16"], 4),
        "bf16_over_fp32": round(med["bf16"] / med["fp32"], 3),
        "fp32_cpu_s_per_step": round(cmed["fp32"], 4),
        "bf16_cpu_s_per_step": round(cmed["bf16"], 4),
        "cpu_bf16_over_fp32": round(cmed["bf16"] / cmed["fp32"], 3),
        "rule_on_full_steps": choose_precision(med["fp32"], med["bf16"]),
        "fp32_s_min": round(min(wall["fp32"]), 4), "bf16_s_min": round(min(wall["bf16"]), 4),
        "fp32_s_all": [round(t, 4) for t in wall["fp32"]],
        "bf16_s_all": [round(t, 4) for t in wall["bf16"]],
        "last_loss": {p: round(v, 4) for p, v in losses.items()},
        "loadavg_1min_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    print(f"{name}: fp32 {med['fp32']:.3f} s/step, bf16 {med['bf16']:.3f} s/step, "
          f"bf16/fp32 {out['bf16_over_fp32']} (cpu {out['cpu_bf16_over_fp32']})", flush=True)
    return out


def probe() -> dict[str, Any]:
    """The start-up probe's decision on this machine (``AND_TRAIN_PRECISION`` ignored)."""
    pinned = os.environ.pop(ENV_PRECISION, None)
    t0 = time.perf_counter()
    try:
        d = resolve_precision("auto")
    finally:
        if pinned is not None:
            os.environ[ENV_PRECISION] = pinned
    out = d.as_dict()
    out["wall_s_incl_setup"] = round(time.perf_counter() - t0, 3)
    print(f"probe: {d.precision} (bf16/fp32 {d.bf16_over_fp32:.3f} on {d.workload}), "
          f"threads {d.threads} {dict(d.thread_seconds)}, {d.probe_seconds:.2f} s", flush=True)
    return out


def emulated(archs: list[str], steps: int, batch: int) -> dict[str, Any]:
    """Re-run the probe (and the steps of ``archs``) with bf16 hardware support masked off."""
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps), "--warmup", "1",
           "--min-seconds", "0", "--batch", str(batch), "--archs", *archs]
    env = {**os.environ, **EMULATION_ENV}
    env.pop(ENV_PRECISION, None)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    child = json.loads(res.stdout.strip().splitlines()[-1])
    return {"env": EMULATION_ENV, "wall_s": round(time.perf_counter() - t0, 1), **child}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--archs", nargs="*", default=list(DEFAULT_TARGETS))
    ap.add_argument("--steps", type=int, default=4, help="min timed steps per precision")
    ap.add_argument("--min-seconds", type=float, default=12.0,
                    help="per arch, keep timing rounds until this much timed wall time")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--no-emulated", dest="emulated", action="store_false")
    ap.add_argument("--emulated-archs", nargs="*", default=["ast-frozen", "cnn"])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/training_step.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    result: dict[str, Any] = {"probe": probe()}
    steps = {a: time_arch(a, args.steps, args.warmup, args.batch, args.min_seconds) for a in args.archs}
    for row in steps.values():
        row["probe_agrees"] = row["rule_on_full_steps"] == result["probe"]["precision"]
    result["steps"] = steps
    if args.child:
        print(json.dumps(result))
        return 0
    if args.emulated:
        result["emulated_bf16"] = emulated(args.emulated_archs, min(args.steps, 2), args.batch)
    d = result["probe"]
    result["environment"] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "cpu_model": d["cpu_model"], "cpu_count": os.cpu_count(), "usable_cores": usable_cores(),
        "cpu_capability": d["cpu_capability"], "bf16_flags": d["bf16_flags"],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "load_average_before": [round(v, 2) for v in load0],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "note": "shared machine: a load average above the core count inflates wall times; "
                "CPU-second ratios are less affected",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
