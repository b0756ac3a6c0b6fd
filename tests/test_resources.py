"""resources.measured: the child processes a block runs count in its CPU time and peak memory."""

from __future__ import annotations

import subprocess
import sys
import time

from and_toolkit.resources import measured

CHILD = """
import time
block = bytearray(200 * 1024 * 1024)
block[::4096] = b"x" * len(block[::4096])  # touch every page: resident
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
time.sleep(1.2)  # alive across several sampling periods and one children listing
"""


def test_a_child_process_counts_in_cpu_and_peak_memory() -> None:
    with measured() as usage:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    # the parent only waited: the 0.4 s of busy loop are the child's, counted once it ended
    assert usage.cpu_s >= 0.35
    assert usage.peak_rss_mib - usage.start_rss_mib >= 150  # the child's 200 MiB, sampled


def test_the_process_alone() -> None:
    with measured() as usage:
        end = time.process_time() + 0.2
        while time.process_time() < end:
            pass
        block = bytearray(100 * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.1)
    assert usage.cpu_s >= 0.18 and usage.wall_s >= 0.3
    assert usage.peak_rss_mib - usage.start_rss_mib >= 80
    del block
