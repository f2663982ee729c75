"""Marker files as jobs write them: group-writable day directories, atomic markers, and a directory a job
cannot write failing with its owner, mode and the fix (not a bare PermissionError on every retry)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from airflow_ha.sensors.markers import DIRECTORY_MODE, MARKER_MODE, write_marker

NOBODY = 65534


def test_a_job_creates_the_days_directory_group_writable_and_writes_atomically(tmp_path: Path):
    old = os.umask(0o022)  # the image's umask: without the explicit chmod the directory would be 0755
    try:
        marker = write_marker(tmp_path / "markers" / "20261201", "edw.0001", '{"job": "edw.0001"}\n')
    finally:
        os.umask(old)
    assert marker == tmp_path / "markers" / "20261201" / "edw.0001.job"
    assert marker.read_text() == '{"job": "edw.0001"}\n'
    for directory in (tmp_path / "markers", marker.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == DIRECTORY_MODE, directory
    assert stat.S_IMODE(marker.stat().st_mode) == MARKER_MODE
    assert [p.name for p in marker.parent.iterdir()] == ["edw.0001.job"]  # no partial file left


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path):
    day = tmp_path / "20261201"
    day.mkdir(mode=0o700)
    os.chmod(day, 0o700)
    write_marker(day, "edw.0002", "x\n")
    assert stat.S_IMODE(day.stat().st_mode) == 0o700


_WRITE_AS_ANOTHER_UID = """
import os, sys
from airflow_ha.sensors.markers import MarkerNotWritable, write_marker  # before: the venv is root's
os.setgid({uid}); os.setuid({uid})
try:
    write_marker(sys.argv[1], "edw.0003", "x\\n")
except MarkerNotWritable as exc:
    print(exc)
    sys.exit(7)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to write as another uid (root bypasses permissions)")
def test_a_directory_created_by_root_fails_the_job_with_the_owner_mode_and_fix():
    base = Path(tempfile.mkdtemp(prefix="markers-"))
    try:
        os.chmod(base, 0o755)
        day = base / "20261201"
        day.mkdir(mode=0o755)  # as a person does on the node: root-owned, not group-writable
        os.chmod(day, 0o755)
        script = _WRITE_AS_ANOTHER_UID.format(uid=NOBODY)
        out = subprocess.run([sys.executable, "-c", script, str(day)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 7, out.stderr
        message = out.stdout
        assert f"cannot write markers into {day} (owned by uid 0 gid 0, mode drwxr-xr-x)" in message
        assert f"as uid {NOBODY}" in message and "Permission denied" in message
        assert "markers.setPermissions" in message and f"chmod 2775 {day}" in message
        assert list(day.iterdir()) == []  # the partial file is not left behind
        # a missing day directory under a root-owned root fails the same way, naming the root
        out = subprocess.run(
            [sys.executable, "-c", script, str(day / "sub")], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 7 and f"cannot write markers into {day} " in out.stdout, out
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)
