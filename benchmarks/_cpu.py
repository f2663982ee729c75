"""CPU seconds from /proc: of the processes in given process groups, and of the whole machine.

Every server and worker a benchmark starts leads its own process group (``start_new_session``), so a
group id names one part of the system under test.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_part(parts: dict[str, set[int]]) -> dict[str, float]:
    """CPU seconds of every live process in each part's process groups, plus what their reaped children
    used: the task processes a worker forked, for one."""
    part_of = {pgid: part for part, pgids in parts.items() for pgid in pgids}
    ticks = dict.fromkeys(parts, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            # after the name: state ppid pgrp session ... utime(11) stime(12) cutime(13) cstime(14)
            part = part_of.get(int(fields[2]))
            if part is not None:
                ticks[part] += sum(int(f) for f in fields[11:15])
    return {part: t / CLOCK_TICK for part, t in ticks.items()}


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot (every core, idle and iowait excluded)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICK


def own_cpu_seconds() -> float:
    """CPU seconds of this process (every thread), without its children."""
    times = os.times()
    return times.user + times.system
