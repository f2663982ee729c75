"""Writing the marker files :class:`~airflow_ha.sensors.operators.UpstreamJobSensor` waits for.

A marker is ``<marker dir>/<job>.job``. A day's directory may be created by anyone: the first job of the
day, an operator on the node as root, an upstream system under its own uid. Every job must still be able
to write its marker there, so:

* directories a job creates are ``2775`` (group-writable, setgid: what it creates keeps the group);
* the chart's ``markers-permissions`` init container gives the marker root a default ACL (rwx for the
  Airflow uid and group), which every directory created below it inherits, whoever creates it;
* a directory a job still cannot write fails the task at once with the owner, the mode and the fix:
  retrying cannot change permissions, and three silent retries hide the cause.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

DIRECTORY_MODE = 0o2775
MARKER_MODE = 0o664


class MarkerNotWritable(PermissionError):
    """The marker's directory exists but this process may not write into it."""


def marker_path(marker_dir: str | os.PathLike, job: str) -> Path:
    return Path(marker_dir) / f"{job}.job"


def ensure_directory(directory: Path) -> None:
    """Create ``directory`` (and missing parents) group-writable; leave existing ones as they are."""
    missing = []
    for parent in (directory, *directory.parents):
        if parent.exists():
            break
        missing.append(parent)
    for created in reversed(missing):
        try:
            created.mkdir(mode=DIRECTORY_MODE)
        except FileExistsError:
            continue  # another job of the same day won the race
        except PermissionError as exc:
            raise MarkerNotWritable(_not_writable(created.parent, exc)) from exc
        os.chmod(created, DIRECTORY_MODE)  # mkdir's mode is cut by the umask


def write_marker(marker_dir: str | os.PathLike, job: str, content: str) -> Path:
    """Write ``<marker_dir>/<job>.job`` atomically: a sensor never sees a half-written marker."""
    directory = Path(marker_dir)
    ensure_directory(directory)
    marker = marker_path(directory, job)
    partial = directory / f".{job}.job.{os.getpid()}"
    try:
        partial.write_text(content)
        os.chmod(partial, MARKER_MODE)
        partial.rename(marker)
    except PermissionError as exc:
        partial.unlink(missing_ok=True)
        raise MarkerNotWritable(_not_writable(directory, exc)) from exc
    return marker


def _not_writable(directory: Path, exc: OSError) -> str:
    try:
        st = directory.stat()
        owner = f"owned by uid {st.st_uid} gid {st.st_gid}, mode {stat.filemode(st.st_mode)}"
    except OSError:
        owner = "not readable"
    return (
        f"cannot write markers into {directory} ({owner}) as uid {os.getuid()} gid {os.getgid()} on "
        f"{socket.gethostname()}: {exc.strerror}. Create day directories through a worker pod "
        "(kubectl exec ... -- mkdir -p DIR), or keep the chart's markers.setPermissions on (the marker root's "
        "default ACL then makes directories created by root or another uid writable for Airflow); to repair "
        f"this one: chmod 2775 {directory} && chgrp {os.getgid()} {directory}"
    )
