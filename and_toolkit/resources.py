"""Wall time, CPU time and peak memory of a block of work (for the run's manifest).

``with measured() as usage: ...`` samples the resident set size of the process and of its live
child processes on a background thread (every :data:`SAMPLE_SECONDS`) while the block runs;
afterwards ``usage`` holds the wall seconds, the CPU seconds of the process (all threads) and
of the child processes it started that ended in the block (the report's drawing worker,
training workers), and the peak RSS in MiB. Nothing else in the package depends on these
numbers: they describe a run, they never change its records.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

SAMPLE_SECONDS = 0.02
"""RSS sampling period (s): a shorter peak than this may be missed."""
CHILDREN_SECONDS = 0.5
"""How often (s) the sampler looks for new child processes (listing them reads every process's
``/proc`` entry, ~1 ms); their RSS is then read at every sample."""
MIB = 1024 * 1024


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity; ``os.cpu_count()`` where unsupported)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass
class Usage:
    """Resources of one measured block.

    Attributes:
        wall_s: elapsed wall-clock seconds.
        cpu_s: CPU seconds (user + system) of the whole process (all threads) in the block,
            plus those of its child processes that ended (and were waited for) in the block.
        peak_rss_mib: highest resident set size seen while the block ran (MiB), sampled: the
            process's plus that of its live child processes.
        start_rss_mib: resident set size when the block started (MiB).
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    start_rss_mib: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """Rounded values for the manifest (s to 0.01, MiB to 0.1)."""
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2),
                "peak_rss_mib": round(self.peak_rss_mib, 1),
                "start_rss_mib": round(self.start_rss_mib, 1)}


def _children_cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of the ended, waited-for child processes so far (0 where the
    platform does not report them)."""
    times = proc.cpu_times()
    return float(times.children_user + times.children_system)


def _rss_mib(proc: psutil.Process, children: list[psutil.Process]) -> float:
    """RSS of ``proc`` plus that of those ``children`` still alive (MiB)."""
    total = proc.memory_info().rss
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:  # ended since it was listed
            pass
    return total / MIB


@contextmanager
def measured() -> Iterator[Usage]:
    """Measure the wall time, CPU time and peak RSS of the ``with`` block (the process and the
    child processes it runs meanwhile: see :class:`Usage`)."""
    proc = psutil.Process()
    usage = Usage(start_rss_mib=proc.memory_info().rss / MIB)
    peak = [usage.start_rss_mib]
    stop = threading.Event()

    def sample() -> None:
        children: list[psutil.Process] = []
        listed = float("-inf")
        while not stop.wait(SAMPLE_SECONDS):
            if time.perf_counter() - listed >= CHILDREN_SECONDS:
                children, listed = proc.children(recursive=True), time.perf_counter()
            peak[0] = max(peak[0], _rss_mib(proc, children))

    sampler = threading.Thread(target=sample, name="and-toolkit-rss", daemon=True)
    wall0, cpu0, kids0 = time.perf_counter(), time.process_time(), _children_cpu(proc)
    sampler.start()
    try:
        yield usage
    finally:
        stop.set()
        sampler.join()
        usage.wall_s = time.perf_counter() - wall0
        usage.cpu_s = time.process_time() - cpu0 + _children_cpu(proc) - kids0
        usage.peak_rss_mib = max(peak[0], proc.memory_info().rss / MIB)
