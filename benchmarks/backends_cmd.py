"""``normconf backends`` (metadata, imports no framework) next to ``normconf backends --probe``.

Run: ``.venv/bin/python benchmarks/backends_cmd.py``.  Each command runs in a fresh subprocess;
wall time and the peak RSS of the process tree (psutil, sampled every 20 ms) are printed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

NORMCONF = str(Path(sys.executable).with_name("normconf"))


def measure(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB summed over the process and its children)."""
    t0 = time.perf_counter()
    proc = psutil.Popen([NORMCONF, *args], stdout=-3, stderr=-3)
    peak = 0
    while proc.poll() is None:
        try:
            rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.02)
    return time.perf_counter() - t0, peak / 1e6


if __name__ == "__main__":
    for args in (["backends"], ["backends", "--probe"]):
        wall, rss = measure(args)
        print(f"normconf {' '.join(args):<20} wall {wall:6.2f} s   peak RSS {rss:7.0f} MB")
