"""Shared bits for servers run as child processes: free ports, waiting, stopping by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


class ServerStartError(RuntimeError):
    """A local server did not come up; the message carries the tail of its log."""


def free_port(also_free_offset: int | None = None) -> int:
    """A TCP port free on 127.0.0.1; with ``also_free_offset``, port+offset is free too (Redis bus)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if also_free_offset is None:
            return port
        if port + also_free_offset < 65536 and port_is_free(port + also_free_offset):
            return port
    raise ServerStartError("no free port pair found on 127.0.0.1")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; always reaps the PID."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def kill_process(proc: subprocess.Popen) -> None:
    """SIGKILL, as a crash would."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def freeze_process(pid: int, timeout: float = 5.0) -> None:
    """SIGSTOP ``pid`` and return once every one of its threads is stopped. kill() returns before the group
    stop is done: on a loaded machine a server thread woken by a request can still answer it first (seen in
    CI: a "frozen" MySQL answered a query in 0.0 s)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:  # "<tid> (<comm>) <state> ...": comm may hold spaces, the state follows its last ")"
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
            except (FileNotFoundError, IndexError):
                continue  # a thread that just exited
        if states and all(s in ("T", "t") for s in states):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"pid {pid} not stopped {timeout:g}s after SIGSTOP (thread states {states})")
        time.sleep(0.01)
