"""Timed micro-workloads for choosing the training precision and thread count on this CPU.

The workload is one forward + backward (gradients dropped, no optimiser) of a pre-norm
transformer block at the AST width (192, 3 heads, MLP 768) on [16, 64, 192] plus a two-block
Conv2d/BatchNorm stack (1 -> 16 -> 32 channels) on [16, 1, 64, 64]: about 35 ms per step in
float32 on one modern core. Calls of the compared variants are interleaved and medians taken,
so load on a shared machine hits both alike. Everything is seeded and restores the global RNG
and the torch thread count. Used by :mod:`and_toolkit.targets.precision`.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

from and_toolkit.resources import usable_cores

__all__ = [
    "SCREEN_SLOWDOWN",
    "PrecisionProbe",
    "ThreadProbe",
    "autocast",
    "interleaved_medians",
    "probe_model_threads",
    "probe_precision",
    "probe_threads",
    "thread_candidates",
    "torch_threads",
    "usable_cores",
]

Precision = Literal["fp32", "bf16"]
K = TypeVar("K")

#: The screen rules bf16 out when its median time is at least this multiple of fp32's.
SCREEN_SLOWDOWN = 2.0


def autocast(precision: str) -> contextlib.AbstractContextManager[object]:
    """The context to run a forward pass in: CPU bf16 autocast or none.

    Raises:
        ValueError: Unless ``precision`` is ``"fp32"`` or ``"bf16"`` (e.g. unresolved ``"auto"``).
    """
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if precision == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"precision: expected 'fp32' or 'bf16', got {precision!r} "
                     "(resolve 'auto' with resolve_train_config first)")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads (None: unchanged); restores the count."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ----- the workload -----------------------------------------------------------------------------
class _Block(nn.Module):
    """Pre-norm transformer block at the AST width (192, 3 heads, MLP 768)."""

    def __init__(self, d: int = 192, heads: int = 3, mlp: int = 768) -> None:
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, mlp), nn.Linear(mlp, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.n1(x)).view(b, t, 3, self.heads, d // self.heads).permute(
            2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = x + self.out(a)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.n2(x))))


def _step_fn(model: nn.Module, inputs: tuple[torch.Tensor, ...], precision: Precision,
             parts: tuple[nn.Module, ...] | None = None) -> Callable[[], None]:
    """One forward + backward (grads dropped) of ``parts`` (default: ``model``) on ``inputs``."""
    mods = parts if parts is not None else (model,)

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        with autocast(precision):
            outs = [m(x) for m, x in zip(mods, inputs, strict=True)]
        torch.stack([o.float().square().mean() for o in outs]).sum().backward()  # fp32 loss

    return step


def _workloads() -> tuple[nn.Module, tuple[nn.Module, ...], tuple[torch.Tensor, ...],
                          nn.Module, tuple[torch.Tensor, ...]]:
    """(step model, its parts, inputs, screen model, screen inputs); seeded, global RNG kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        block = _Block()
        conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AvgPool2d(2),
        )
        model = nn.ModuleList([block, conv]).train()
        # batch 16: 64 tokens x 192 (transformer), 64 frames x 64 mel (conv)
        inputs = (torch.randn(16, 64, 192), torch.randn(16, 1, 64, 64))
        screen = nn.Linear(192, 768)
        screen_in = (torch.randn(512, 192),)
    return model, (block, conv), inputs, screen, screen_in


def interleaved_medians(
    fns: Mapping[K, Callable[[], None]],
    clock: Callable[[], float],
    min_reps: int,
    max_reps: int,
    budget_s: float,
    cap_s: float = 0.6,
    drop_factor: float | None = None,
) -> dict[K, float]:
    """Median ``clock`` seconds per call of each fn, calls interleaved.

    One warm-up call each (with ``drop_factor``, a fn whose warm-up took more than
    ``drop_factor`` times the fastest warm-up is dropped and reported by that time), then
    rounds calling every remaining fn once (order alternating between rounds) until
    ``min_reps`` rounds and ``budget_s`` wall seconds, or ``max_reps`` rounds, or (after at
    least one round) ``cap_s`` wall seconds; the wall budgets include the warm-up.

    Args:
        fns: Variants to compare, by key.
        clock: Seconds clock (``time.perf_counter`` wall, ``time.process_time`` CPU).
        min_reps: Rounds to run at least (unless ``cap_s`` is hit).
        max_reps: Rounds to run at most.
        budget_s: Wall seconds after which to stop once ``min_reps`` rounds are done.
        cap_s: Wall seconds after which to stop after any round.
        drop_factor: Warm-up slowness beyond which a variant is not repeated (None: never).

    Returns:
        Median seconds per call by key.
    """
    start = time.perf_counter()
    warm: dict[K, float] = {}
    for k, fn in fns.items():
        t0 = clock()
        fn()
        warm[k] = clock() - t0
    fastest = min(warm.values())
    keys = [k for k in fns if drop_factor is None or warm[k] <= drop_factor * fastest]
    times: dict[K, list[float]] = {k: [] if k in keys else [warm[k]] for k in fns}
    for rep in range(max_reps):
        for k in keys if rep % 2 == 0 else reversed(keys):
            t0 = clock()
            fns[k]()
            times[k].append(clock() - t0)
        elapsed = time.perf_counter() - start
        if elapsed >= cap_s or (rep + 1 >= min_reps and elapsed >= budget_s):
            break
    return {k: statistics.median(v) for k, v in times.items()}


def thread_candidates(cores: int) -> list[int]:
    """Thread counts the probe compares: 1, half the cores (if >= 4) and all ``cores``."""
    return sorted({1, cores} | ({cores // 2} if cores >= 4 else set()))


@dataclass(frozen=True)
class PrecisionProbe:
    """Result of :func:`probe_precision`.

    Attributes:
        workload: ``"step"`` (the representative step was timed) or ``"screen"`` (bf16 was
            ruled out by the one-Linear screen; the times below are the screen's).
        fp32_s: Median CPU seconds per call in float32 (one thread).
        bf16_s: Median CPU seconds per call under bf16 autocast (one thread).
        screen_ratio: bf16 / fp32 median CPU time of the screen.
        wall_s: Wall seconds the probe took.
    """

    workload: Literal["step", "screen"]
    fp32_s: float
    bf16_s: float
    screen_ratio: float
    wall_s: float


@dataclass(frozen=True)
class ThreadProbe:
    """Result of :func:`probe_threads`.

    Attributes:
        seconds: ``(threads, median wall seconds per step)`` per candidate, ascending.
        wall_s: Wall seconds the probe took.
    """

    seconds: tuple[tuple[int, float], ...]
    wall_s: float


@functools.cache
def probe_precision() -> PrecisionProbe:
    """Time float32 against bf16 autocast (memoised per process, about 0.1-0.7 s).

    Runs on one thread and measures process CPU seconds, so time spent descheduled by other
    load on a shared machine does not count and the ratio reflects the instruction set. A
    one-Linear screen (512 x 192 -> 768) first rules bf16 out when it is at least
    :data:`SCREEN_SLOWDOWN` times slower (emulated bf16: the representative step would cost
    ~0.5 s per call); otherwise the representative step is timed (>= 4 interleaved rounds).
    """
    t0 = time.perf_counter()
    model, parts, inputs, screen, screen_in = _workloads()
    cpu = time.process_time
    variants: tuple[Precision, ...] = ("fp32", "bf16")
    with torch_threads(1):
        scr = interleaved_medians({p: _step_fn(screen, screen_in, p) for p in variants}, cpu,
                                  min_reps=3, max_reps=3, budget_s=0.0)
        ratio = scr["bf16"] / scr["fp32"]
        if ratio >= SCREEN_SLOWDOWN:
            return PrecisionProbe("screen", scr["fp32"], scr["bf16"], ratio,
                                  time.perf_counter() - t0)
        med = interleaved_medians({p: _step_fn(model, inputs, p, parts) for p in variants}, cpu,
                                  min_reps=4, max_reps=8, budget_s=0.3)
    return PrecisionProbe("step", med["fp32"], med["bf16"], ratio, time.perf_counter() - t0)


@functools.cache
def probe_threads(cores: int, precision: Precision) -> ThreadProbe:
    """Wall seconds per representative step at each of :func:`thread_candidates` (memoised).

    Wall time, because contention is what the thread count must respond to: with another
    process on a core, a team of all-core threads can be many times slower than one thread. A
    count whose warm-up is 4x slower than the best is not repeated. About 0.2-0.6 s.

    Args:
        cores: Usable cores.
        precision: Precision of the step (the one chosen for training).
    """
    t0 = time.perf_counter()
    model, parts, inputs, _, _ = _workloads()
    seconds = _thread_seconds(_step_fn(model, inputs, precision, parts), cores, min_reps=3,
                              max_reps=6, budget_s=0.25, cap_s=0.5)
    return ThreadProbe(seconds, time.perf_counter() - t0)


def _thread_seconds(step: Callable[[], None], cores: int, *, min_reps: int, max_reps: int,
                    budget_s: float, cap_s: float) -> tuple[tuple[int, float], ...]:
    """``(threads, median wall seconds of step)`` per :func:`thread_candidates`, interleaved
    (the round limits are :func:`interleaved_medians`'; a count 4x slower to warm up is not
    repeated)."""
    def at(n: int) -> Callable[[], None]:
        def run() -> None:
            with torch_threads(n):
                step()

        return run

    cands = thread_candidates(cores)
    med = interleaved_medians({n: at(n) for n in cands}, time.perf_counter, min_reps, max_reps,
                              budget_s, cap_s, drop_factor=4.0)
    return tuple((n, med[n]) for n in cands)


def probe_model_threads(model: nn.Module, batch: torch.Tensor, precision: Precision,
                        cores: int, cap_s: float = 8.0) -> ThreadProbe:
    """Wall seconds per training step of ``model`` itself at each of :func:`thread_candidates`.

    The generic step of :func:`probe_threads` is small (1,024 tokens): it under-states what a
    second thread buys a real training step (the ESC-50 AST's batch is about ten times larger;
    ``benchmarks/results/train_workers.json``). This times one forward + backward of the
    target's own model on one batch of its training shape (random values): one warm-up per
    count, then rounds across the counts (order alternating) until four rounds or, after the
    first, ``cap_s`` wall seconds (warm-up included). The model's parameters and the global
    RNG are left as they were (gradients are cleared; batch-norm running statistics are
    restored).

    Args:
        model: the target network (train mode is set for the probe, then restored).
        batch: one input batch [B, ...] of the training shape.
        precision: the training precision.
        cores: usable cores.
    """
    t0 = time.perf_counter()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.train()

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        with autocast(precision):
            out = model(batch)
        logits = getattr(out, "logits", out)
        logits.float().square().mean().backward()

    try:
        with torch.random.fork_rng(devices=[]):
            seconds = _thread_seconds(step, cores, min_reps=2, max_reps=4, budget_s=0.0,
                                      cap_s=cap_s)
    finally:
        for p in model.parameters():
            p.grad = None
        model.load_state_dict(state)
        model.train(was_training)
    return ThreadProbe(seconds, time.perf_counter() - t0)
