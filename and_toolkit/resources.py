"""Wall time, CPU time and peak memory of a block of work (for the run's manifest).

``with measured() as usage: ...`` samples the process's resident set size on a background
thread (every :data:`SAMPLE_SECONDS`) while the block runs; afterwards ``usage`` holds the wall
seconds, the process CPU seconds (all threads) and the peak RSS in MiB. Nothing else in the
package depends on these numbers: they describe a run, they never change its records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

SAMPLE_SECONDS = 0.02
"""RSS sampling period (s): a shorter peak than this may be missed."""
MIB = 1024 * 1024


@dataclass
class Usage:
    """Resources of one measured block.

    Attributes:
        wall_s: elapsed wall-clock seconds.
        cpu_s: CPU seconds of the whole process (user + system, all threads) in the block.
        peak_rss_mib: highest resident set size seen while the block ran (MiB), sampled.
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


@contextmanager
def measured() -> Iterator[Usage]:
    """Measure the wall time, CPU time and peak RSS of the ``with`` block."""
    proc = psutil.Process()
    usage = Usage(start_rss_mib=proc.memory_info().rss / MIB)
    peak = [usage.start_rss_mib]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], proc.memory_info().rss / MIB)

    sampler = threading.Thread(target=sample, name="and-toolkit-rss", daemon=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    sampler.start()
    try:
        yield usage
    finally:
        stop.set()
        sampler.join()
        usage.wall_s = time.perf_counter() - wall0
        usage.cpu_s = time.process_time() - cpu0
        usage.peak_rss_mib = max(peak[0], proc.memory_info().rss / MIB)
