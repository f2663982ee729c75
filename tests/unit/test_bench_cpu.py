"""benchmarks/_cpu.py: CPU seconds read from /proc, by process group, for the benchmarks' per-part tables."""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks._cpu import cpu_seconds_by_part, machine_cpu_seconds, own_cpu_seconds

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\ntime.sleep(30)"


def test_a_busy_process_group_is_counted_in_its_part_and_nowhere_else():
    busy = subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        time.sleep(0.1)
        machine_before = machine_cpu_seconds()
        deadline = time.monotonic() + 20
        while (seconds := cpu_seconds_by_part({"busy": {busy.pid}, "idle": {idle.pid}}))["busy"] < 0.4:
            assert time.monotonic() < deadline, seconds
            time.sleep(0.05)
        assert seconds["idle"] < 0.2, seconds  # its interpreter's start-up only
        assert machine_cpu_seconds() > machine_before
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()


def test_own_cpu_seconds_counts_this_process():
    before = own_cpu_seconds()
    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    assert own_cpu_seconds() - before >= 0.19
