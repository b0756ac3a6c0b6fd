"""Facts about this CPU and torch build: provenance of trainings and identity of remembered
measurements.

A target's weights key holds its training precision but not the rest of what decides the bytes
of a training: the thread count (float32 sums split across threads add in another order) and the
CPU's kernels (torch's CPU capability: AVX2, AVX-512, ...). :func:`training_facts` records them
beside the stored weights, so a run that reads the weights from the cache reports how they were
made, not how this process would make them.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from and_toolkit.targets.timing import usable_cores

__all__ = ["bf16_flags", "cpu_capability", "cpu_model", "training_facts"]


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read(200_000)
    except OSError:
        return ""


def cpu_model() -> str:
    """``/proc/cpuinfo``'s "model name", else ``platform.processor()`` (or the machine type)."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def bf16_flags() -> tuple[str, ...]:
    """The CPU's flags that decide bf16 speed (``*bf16*``, ``amx*``), sorted; () if none or
    unknown."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            flags = set(line.split(":", 1)[1].split())
            return tuple(sorted(f for f in flags if "bf16" in f or f.startswith("amx")))
    return ()


def cpu_capability() -> str:
    """torch's CPU kernel level in this process (e.g. ``"AVX2"``, ``"AVX512"``; lowered by
    ``ATEN_CPU_CAPABILITY``)."""
    return str(torch.backends.cpu.get_cpu_capability())


def training_facts(threads: int | None, precision: str) -> dict[str, Any]:
    """What a training in this process runs with: ``threads`` (None: torch's current intra-op
    count), ``precision``, the CPU model, usable cores, torch's CPU capability, the bf16 flags
    and the torch version (JSON-ready)."""
    return {"threads": int(threads) if threads is not None else torch.get_num_threads(),
            "precision": precision, "cpu": cpu_model(), "cores": usable_cores(),
            "capability": cpu_capability(), "bf16_flags": list(bf16_flags()),
            "torch": torch.__version__}
