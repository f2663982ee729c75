"""DebianRoot's bookkeeping on a fake root: installed packages, library path, loader argv, skips."""

from __future__ import annotations

import pytest

from tests.harness.servers import debian_root
from tests.harness.servers.debian_root import DebianRoot, RootUnavailable

STATUS = """Package: redis-server
Status: install ok installed
Version: 5:8.0.6-1
Description: persistent key-value database
 with network interface

Package: mysql-server-core
Status: deinstall ok config-files
Version: 9.7.4-2

Package: libc6
Status: install ok installed
"""


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "debian-unstable"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    (root / "usr/lib64/ld-linux-x86-64.so.2").write_text("")
    (root / "lib").symlink_to("usr/lib")
    (root / "lib64").symlink_to("usr/lib64")
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    (root / "etc/ld.so.conf.d/x86_64-linux-gnu.conf").write_text("# multiarch\n/usr/lib/x86_64-linux-gnu\n")
    (root / "usr/bin").mkdir()
    (root / "usr/bin/redis-server").write_text("")
    return DebianRoot(root)


def test_installed_reads_dpkg_status(fake_root):
    assert fake_root.ready
    assert fake_root.installed() == {"redis-server", "libc6"}
    assert fake_root.missing(["redis-server", "mysql-server-core"]) == ["mysql-server-core"]


def test_ensure_is_a_no_op_when_everything_is_installed(fake_root, monkeypatch):
    monkeypatch.setattr(debian_root.os, "geteuid", lambda: 1000)  # would refuse to build
    assert fake_root.ensure(["redis-server"]) is fake_root


def test_ensure_says_why_it_cannot_build(tmp_path, monkeypatch):
    monkeypatch.setattr(debian_root.os, "geteuid", lambda: 1000)
    with pytest.raises(RootUnavailable, match="needs root"):
        DebianRoot(tmp_path / "none").ensure(["redis-server"])


def test_argv_runs_the_binary_with_the_roots_loader_and_libraries(fake_root):
    argv = fake_root.argv("/usr/bin/redis-server", "/tmp/redis.conf")
    root = fake_root.path
    assert argv[0] == str(root / "lib64/ld-linux-x86-64.so.2")
    assert argv[1] == "--library-path"
    # lib/x86_64-linux-gnu is the same directory as usr/lib/x86_64-linux-gnu (usrmerge): listed once
    assert argv[2].split(":") == [str(root / "usr/lib/x86_64-linux-gnu"), str(root / "lib")]
    assert argv[-2:] == [str(root / "usr/bin/redis-server"), "/tmp/redis.conf"]
    with pytest.raises(RootUnavailable, match="not installed"):
        fake_root.argv("/usr/sbin/mysqld")


def test_default_location_follows_the_cache_env(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_HA_DEBIAN_ROOT", raising=False)
    monkeypatch.setenv("AIRFLOW_HA_CACHE", str(tmp_path))
    assert DebianRoot.default().path == tmp_path / "debian-unstable"
    monkeypatch.setenv("AIRFLOW_HA_DEBIAN_ROOT", str(tmp_path / "elsewhere"))
    assert DebianRoot.default().path == tmp_path / "elsewhere"


def test_shims_exec_the_loader_argv(fake_root):
    bin_dir = fake_root.shims({"redis-server": "/usr/bin/redis-server"})
    script = (bin_dir / "redis-server").read_text()
    assert script.startswith("#!/bin/sh\n")
    assert f"exec {fake_root.path}/lib64/ld-linux-x86-64.so.2 --library-path " in script
    assert script.rstrip().endswith(f'{fake_root.path}/usr/bin/redis-server "$@"')
    assert fake_root.shims({"redis-server": "/usr/bin/redis-server"}) == bin_dir  # idempotent
