"""Training precision and thread count, measured on this machine instead of assumed.

CPUs without native bfloat16 (no AVX-512-BF16 / AMX) emulate bf16 autocast 5-20x slower than
float32 (one ESC-50 AST step: 17.5 s bf16 vs 0.84 s fp32 on an AVX2 laptop), so the default
``TrainConfig.precision = "auto"`` is resolved before training by :func:`resolve_train_config`:

1. **Precision** (unless explicit): a one-Linear screen rules bf16 out cheaply when it is at
   least 2x slower (emulation); otherwise a representative step (forward + backward of a
   transformer block at the AST width and a small Conv2d stack, batch 16) is timed in float32
   and under ``torch.autocast("cpu", dtype=torch.bfloat16)``, interleaved, on one thread in
   process CPU seconds; bf16 is chosen only if its median is at least :data:`MIN_BF16_SPEEDUP`
   times faster (:func:`choose_precision`), else fp32.
2. **Threads** (unless ``TrainConfig.threads`` is set): the same step in the chosen precision
   is timed in wall seconds at 1, half the usable cores (if >= 4) and all usable cores,
   interleaved; a larger count is taken only if its median is :data:`MIN_THREAD_GAIN` times
   faster (:func:`choose_threads`). This is a snapshot of the load at start. Given the clip
   shape, targets of :data:`MODEL_PROBE_ARCHS` are timed on their own training step instead
   (the generic step is ten times smaller and under-states what a second thread buys).

Together about 0.5-1.5 s (workloads in :mod:`and_toolkit.targets.timing`), measured at most
once per process (memoised); the torch thread count and the global RNG are restored. Nothing
about the machine is assumed: CPU flags are recorded for provenance only.

Precedence of the precision: an explicit ``TrainConfig.precision`` of ``"fp32"``/``"bf16"``
wins; for ``"auto"``, the environment variable ``AND_TRAIN_PRECISION`` (``fp32``, ``bf16`` or
``auto``; read only here, in :func:`resolve_precision`) pins it, e.g. for CI; otherwise the
probe decides. The chosen precision is part of the weights key; threads are not.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

import torch

from and_toolkit.targets import machine, timing
from and_toolkit.targets.config import TrainConfig
from and_toolkit.targets.timing import SCREEN_SLOWDOWN, autocast, torch_threads, usable_cores

__all__ = [
    "ENV_PRECISION",
    "MEMO_NAMESPACE",
    "MIN_BF16_SPEEDUP",
    "MIN_THREAD_GAIN",
    "SCREEN_SLOWDOWN",
    "DecisionMemo",
    "PrecisionDecision",
    "autocast",
    "choose_precision",
    "choose_threads",
    "machine_key",
    "resolve_precision",
    "resolve_train_config",
    "torch_threads",
]

Precision = Literal["fp32", "bf16"]

#: Environment variable pinning the precision of ``"auto"`` configs: fp32 | bf16 | auto.
ENV_PRECISION = "AND_TRAIN_PRECISION"
#: bf16 is chosen only if its median probe step is at least this many times faster than fp32.
MIN_BF16_SPEEDUP = 1.25
#: A larger thread count is chosen only if its median probe step is this many times faster.
MIN_THREAD_GAIN = 1.1


@dataclass(frozen=True)
class PrecisionDecision:
    """How the training precision and thread count were chosen (for provenance).

    Attributes:
        precision: The precision training runs in.
        precision_source: ``"config"`` (explicit in the TrainConfig), ``"env"``
            (:data:`ENV_PRECISION`) or ``"probe"`` (measured here).
        threads: torch intra-op threads for training.
        threads_source: ``"config"``, ``"probe"`` (the generic step), ``"target"`` (the
            target's own training step, :func:`resolve_train_config` with ``clip_shape``) or
            ``"single-core"`` (one usable core).
        fp32_s: Median CPU seconds per probe call in float32, one thread (None: not probed).
        bf16_s: Median CPU seconds per probe call under bf16 autocast, one thread (None: not
            probed).
        bf16_over_fp32: ``bf16_s / fp32_s`` (< 1: bf16 faster); None if not probed.
        workload: ``"step"`` (representative step), ``"screen"`` (bf16 ruled out by the
            one-Linear screen; the times are the screen's) or ``""`` (not probed).
        screen_bf16_over_fp32: bf16 / fp32 median CPU time of the screen (None: not run).
        min_speedup: The margin of the rule (:data:`MIN_BF16_SPEEDUP`).
        thread_seconds: ``(threads, median wall seconds per probe step in the chosen
            precision)`` per candidate; empty unless threads were probed.
        probe_seconds: Wall seconds the measurements took when first made in this process
            (0 when nothing was measured).
        cpu_model: ``/proc/cpuinfo`` "model name" (else ``platform.processor()``).
        cpu_count: Usable cores (CPU affinity).
        cpu_capability: ``torch.backends.cpu.get_cpu_capability()`` (e.g. ``"AVX512"``).
        bf16_flags: bf16-related CPU flags present (informational, never used to decide).
        torch_version: ``torch.__version__``.
        remembered: the measured parts were taken from an earlier measurement on this machine
            (a :class:`DecisionMemo`), not measured again.
        thread_workload: what ``thread_seconds`` timed: ``"generic step"`` or
            ``"target step [B, ...]"`` (the target's model on a batch of that shape).
        threads_remembered: the target step's times came from a :class:`DecisionMemo`.
    """

    precision: Precision
    precision_source: Literal["config", "env", "probe"]
    threads: int
    threads_source: Literal["config", "probe", "target", "single-core"]
    fp32_s: float | None = None
    bf16_s: float | None = None
    bf16_over_fp32: float | None = None
    workload: Literal["step", "screen", ""] = ""
    screen_bf16_over_fp32: float | None = None
    min_speedup: float = MIN_BF16_SPEEDUP
    thread_seconds: tuple[tuple[int, float], ...] = ()
    probe_seconds: float = 0.0
    cpu_model: str = field(default_factory=machine.cpu_model)
    cpu_count: int = field(default_factory=lambda: usable_cores())
    cpu_capability: str = field(default_factory=machine.cpu_capability)
    bf16_flags: tuple[str, ...] = field(default_factory=machine.bf16_flags)
    torch_version: str = torch.__version__
    remembered: bool = False
    thread_workload: str = "generic step"
    threads_remembered: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict (thread_seconds as ``{threads: seconds}`` with string keys)."""
        out = asdict(self)
        out["thread_seconds"] = {str(k): v for k, v in self.thread_seconds}
        out["bf16_flags"] = list(self.bf16_flags)
        return out


# ----- pure decision rules ----------------------------------------------------------------------
def choose_precision(
    fp32_s: float, bf16_s: float, min_speedup: float = MIN_BF16_SPEEDUP
) -> Precision:
    """``"bf16"`` iff bf16 is at least ``min_speedup`` times faster, else ``"fp32"``.

    Args:
        fp32_s: Median seconds per step in float32 (> 0).
        bf16_s: Median seconds per step under bf16 autocast (> 0).
        min_speedup: Required ``fp32_s / bf16_s``.

    Raises:
        ValueError: On non-positive times.
    """
    if not (fp32_s > 0 and bf16_s > 0):
        raise ValueError(f"times must be positive, got fp32 {fp32_s} s, bf16 {bf16_s} s")
    return "bf16" if fp32_s >= min_speedup * bf16_s else "fp32"


def choose_threads(seconds: Mapping[int, float], min_gain: float = MIN_THREAD_GAIN) -> int:
    """Fewest threads unless more are faster by ``min_gain``: walk the counts in ascending
    order and move to a larger count only if ``best_s / its_s >= min_gain``.

    Args:
        seconds: Median seconds per step by thread count (non-empty, positive).
        min_gain: Required speedup to take more threads.

    Raises:
        ValueError: On an empty mapping or non-positive times/counts.
    """
    if not seconds or any(n < 1 or s <= 0 for n, s in seconds.items()):
        raise ValueError(f"seconds: need positive thread counts and times, got {dict(seconds)}")
    best = min(seconds)
    for n in sorted(seconds):
        if seconds[best] >= min_gain * seconds[n]:
            best = n
    return best


# ----- per-machine memory ----------------------------------------------------------------------
class DecisionMemo(Protocol):
    """Where measured decisions persist between processes (e.g. :class:`and_toolkit.cache.Cache`)."""

    def get_json(self, namespace: str, key: str) -> Any | None: ...

    def put_json(self, namespace: str, key: str, value: Any) -> None: ...


MEMO_NAMESPACE = "machine"
"""Namespace of remembered measurements in a :class:`DecisionMemo`."""


def machine_key() -> str:
    """Identity of this machine for remembered measurements: CPU model, usable cores, torch's
    CPU capability, bf16 flags, torch version and the probe's rules (sha256 hex)."""
    ident = {"v": 1, "cpu": machine.cpu_model(), "cores": usable_cores(),
             "capability": machine.cpu_capability(),
             "flags": list(machine.bf16_flags()), "torch": torch.__version__,
             "min_speedup": MIN_BF16_SPEEDUP, "min_thread_gain": MIN_THREAD_GAIN}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _remembered(memo: DecisionMemo | None) -> dict[str, Any] | None:
    if memo is None:
        return None
    found = memo.get_json(MEMO_NAMESPACE, machine_key())
    ok = isinstance(found, dict) and found.get("precision") in ("fp32", "bf16") \
        and isinstance(found.get("threads"), int) and found["threads"] >= 1
    return found if ok else None


# ----- resolution -------------------------------------------------------------------------------
def _requested(precision: str) -> tuple[Precision | None, Literal["config", "env", "probe"]]:
    """Apply the precedence config > :data:`ENV_PRECISION` > probe (None: probe)."""
    concrete: dict[str, Precision] = {"fp32": "fp32", "bf16": "bf16"}
    if precision in concrete:
        return concrete[precision], "config"
    if precision != "auto":
        raise ValueError(f"precision: expected 'auto', 'fp32' or 'bf16', got {precision!r}")
    env = os.environ.get(ENV_PRECISION, "").strip().lower()
    if env in concrete:
        return concrete[env], "env"
    if env not in ("", "auto"):
        raise ValueError(f"{ENV_PRECISION}: expected fp32, bf16 or auto, got {env!r}")
    return None, "probe"


def resolve_precision(precision: str = "auto", threads: int | None = None,
                      memo: DecisionMemo | None = None) -> PrecisionDecision:
    """Decide the training precision and thread count; probes only what is not given.

    The probes are memoised per process, so repeated calls cost nothing and agree;
    ``probe_seconds`` reports what the measurements cost when they were made.

    Args:
        precision: ``"auto"`` (:data:`ENV_PRECISION` if set, else probe), ``"fp32"`` or
            ``"bf16"`` (returned as is).
        threads: Explicit torch thread count, or None to choose by the probe.
        memo: where this machine's measured choice is remembered across processes: the first
            probe stores it, later calls reuse it, so a machine keeps making the same choice
            (and training the same weights) however loaded it is at start-up.

    Returns:
        The decision record (measurements included when a probe ran).

    Raises:
        ValueError: On an unknown precision, a bad :data:`ENV_PRECISION` value, or threads < 1.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads: must be >= 1, got {threads}")
    chosen, source = _requested(precision)
    if chosen is None or threads is None:
        known = _remembered(memo)
        if known is not None:
            measured = {k: v for k, v in known.items() if k in _MEASURED}
            return PrecisionDecision(
                precision=known["precision"] if chosen is None else chosen,
                precision_source=source, threads=known["threads"] if threads is None else threads,
                threads_source="config" if threads is not None else known["threads_source"],
                remembered=True, **measured)
    decision = _measure(chosen, source, threads)
    if memo is not None and decision.precision_source == "probe" \
            and decision.threads_source != "config":
        memo.put_json(MEMO_NAMESPACE, machine_key(), decision.as_dict())
    return decision


_MEASURED = ("fp32_s", "bf16_s", "bf16_over_fp32", "workload", "screen_bf16_over_fp32",
             "probe_seconds")
"""Measurement fields copied from a remembered decision."""


def _measure(chosen: Precision | None, source: Literal["config", "env", "probe"],
             threads: int | None) -> PrecisionDecision:
    """Probe what is not given (memoised per process) and build the decision."""
    wall = 0.0
    pp: timing.PrecisionProbe | None = None
    if chosen is None:
        pp = timing.probe_precision()
        wall += pp.wall_s
        chosen = choose_precision(pp.fp32_s, pp.bf16_s) if pp.workload == "step" else "fp32"
    cores = usable_cores()
    thread_s: tuple[tuple[int, float], ...] = ()
    n_source: Literal["config", "probe", "single-core"]
    if threads is not None:
        n, n_source = threads, "config"
    elif cores == 1:
        n, n_source = 1, "single-core"
    else:
        tp = timing.probe_threads(cores, chosen)
        thread_s, wall = tp.seconds, wall + tp.wall_s
        n, n_source = choose_threads(dict(thread_s)), "probe"
    decision = PrecisionDecision(
        precision=chosen, precision_source=source, threads=n, threads_source=n_source,
        thread_seconds=thread_s, probe_seconds=round(wall, 3), cpu_count=cores)
    if pp is None:
        return decision
    return replace(decision, fp32_s=pp.fp32_s, bf16_s=pp.bf16_s,
                   bf16_over_fp32=pp.bf16_s / pp.fp32_s, workload=pp.workload,
                   screen_bf16_over_fp32=pp.screen_ratio)


MODEL_PROBE_ARCHS: frozenset[str] = frozenset({"ast", "ast-frozen", "cnn"})
"""Archs whose thread count is measured on their own training step when the clip shape is
known (the pretrained archs' steps depend on cached backbone outputs; they keep the generic
probe)."""
_MODEL_PROBES: dict[str, tuple[tuple[int, float], ...]] = {}
"""Target-step thread times measured in this process, by memo key."""


def _target_threads(cfg: TrainConfig, clip_shape: tuple[int, ...], decision: PrecisionDecision,
                    memo: DecisionMemo | None) -> PrecisionDecision:
    """``decision`` with the thread count chosen on the target's own step (``cfg`` has its
    concrete precision): measured once per machine, config (but threads / epochs) and clip
    shape, remembered in ``memo``."""
    from and_toolkit.targets.config import build_model

    ident = {"v": 1, "machine": machine_key(), "clip_shape": list(clip_shape),
             "cfg": cfg.model_dump(mode="json", exclude={"threads", "epochs"})}
    key = "target-threads-" + hashlib.sha256(
        json.dumps(ident, sort_keys=True).encode()).hexdigest()
    workload = f"target step [{cfg.batch_size}, {', '.join(map(str, clip_shape))}]"
    found = memo.get_json(MEMO_NAMESPACE, key) if memo is not None else None
    remembered, wall = False, 0.0
    if key in _MODEL_PROBES:
        seconds = _MODEL_PROBES[key]
    elif isinstance(found, dict) and isinstance(found.get("thread_seconds"), dict) \
            and found["thread_seconds"]:
        seconds = tuple(sorted((int(n), float(t)) for n, t in found["thread_seconds"].items()))
        remembered = True
    else:
        model = build_model(cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            batch = torch.randn(cfg.batch_size, *clip_shape)
        probe = timing.probe_model_threads(model, batch, decision.precision, usable_cores())
        seconds, wall = probe.seconds, probe.wall_s
        if memo is not None:
            memo.put_json(MEMO_NAMESPACE, key, {"thread_seconds": {str(n): t for n, t in seconds},
                                                "workload": workload})
    _MODEL_PROBES[key] = seconds
    return replace(decision, threads=choose_threads(dict(seconds)), threads_source="target",
                   thread_seconds=seconds, thread_workload=workload,
                   threads_remembered=remembered,
                   probe_seconds=round(decision.probe_seconds + wall, 3))


def resolve_train_config(cfg: TrainConfig, memo: DecisionMemo | None = None,
                         clip_shape: tuple[int, ...] | None = None
                         ) -> tuple[TrainConfig, PrecisionDecision]:
    """A copy of ``cfg`` with a concrete ``precision`` and ``threads``, and how they were chosen.

    Compute ``weights_key`` from the returned config (the chosen precision is part of the key;
    threads are not) and store ``decision.as_dict()`` in the target's provenance.

    Args:
        cfg: A training configuration (``precision`` may be ``"auto"``, ``threads`` None).
        memo: see :func:`resolve_precision`.
        clip_shape: the shape of one training input without the batch axis (log-mel
            [T, F]). Given, with ``threads`` unset, for an arch of :data:`MODEL_PROBE_ARCHS` on
            more than one core: the thread count is chosen on the target's own training step
            (:func:`~and_toolkit.targets.timing.probe_model_threads`, remembered in ``memo``
            per machine, config and shape) instead of the generic step.

    Returns:
        (resolved config, decision).

    Raises:
        ValueError: As :func:`resolve_precision`.
    """
    decision = resolve_precision(cfg.precision, cfg.threads, memo)
    if clip_shape is not None and cfg.threads is None and cfg.arch in MODEL_PROBE_ARCHS \
            and decision.threads_source == "probe":
        decision = _target_threads(cfg.model_copy(update={"precision": decision.precision}),
                                   tuple(clip_shape), decision, memo)
    resolved = cfg.model_copy(update={"precision": decision.precision, "threads": decision.threads})
    return resolved, decision
