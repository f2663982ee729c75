"""A cached Debian root (``debootstrap --variant=minbase unstable``) whose servers run on this host.

The local servers come from Debian unstable: MySQL 9.7 (``mysql-server-core``) and Redis 8
(``redis-server``). Their packages need a newer glibc than the bookworm hosts these tests run on, so
they cannot be installed on the host. Instead one minbase root is made once under
``$AIRFLOW_HA_CACHE/debian-unstable`` (default ``~/.cache/airflow-ha``), packages are installed into it
with its own apt (in a chroot), and a binary runs on the host through the root's own dynamic loader::

    ROOT/lib64/ld-linux-x86-64.so.2 --library-path ROOT/lib/x86_64-linux-gnu:... ROOT/usr/sbin/mysqld ...

so the process is a plain child of the caller, every path it is given is a host path (data dirs under
pytest's tmp dirs, sockets, logs) and it is stopped by its PID like any other. Only compiled-in paths
(MySQL's plugin and message dirs) must be passed explicitly; :meth:`DebianRoot.path_of` maps them.

Making the root needs root (debootstrap, chroot) and the Debian mirror; without either,
:class:`RootUnavailable` carries the reason, which test fixtures turn into a skip (a failure under CI).
Parallel pytest sessions share the root: creation and installs happen under an exclusive ``flock``,
and a root is published by an atomic rename only once debootstrap finished.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.servers.process import ServerStartError

DEFAULT_SUITE = "unstable"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOADER = "lib64/ld-linux-x86-64.so.2"
# The mirror serves unstable's Release file past its Valid-Until date; apt refuses it without this.
APT_CONF = 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
# Daemons must never start inside the root while packages are installed.
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


class RootUnavailable(ServerStartError):
    """The Debian root cannot be made or used here (not root, no debootstrap, no mirror)."""


def cache_dir() -> Path:
    return Path(os.environ.get("AIRFLOW_HA_CACHE") or Path.home() / ".cache" / "airflow-ha")


@dataclass
class DebianRoot:
    """One minbase root of ``suite`` at ``path``; :meth:`ensure` makes it and installs packages."""

    path: Path
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR

    @classmethod
    def default(cls, suite: str = DEFAULT_SUITE) -> DebianRoot:
        """``$AIRFLOW_HA_DEBIAN_ROOT`` or ``$AIRFLOW_HA_CACHE/debian-<suite>``, from ``$AIRFLOW_HA_DEBIAN_MIRROR``."""
        path = os.environ.get("AIRFLOW_HA_DEBIAN_ROOT") or cache_dir() / f"debian-{suite}"
        return cls(Path(path), suite=suite, mirror=os.environ.get("AIRFLOW_HA_DEBIAN_MIRROR") or DEFAULT_MIRROR)

    # -- state ---------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """debootstrap finished here (a partial root is never at ``path``)."""
        return (self.path / LOADER).exists() and (self.path / "var/lib/dpkg/status").is_file()

    def installed(self) -> set[str]:
        """Names of the packages dpkg records as installed in the root."""
        names: set[str] = set()
        try:
            text = (self.path / "var/lib/dpkg/status").read_text(errors="replace")
        except OSError:
            return names
        for stanza in text.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
            if fields.get("Status", "").endswith(" installed") and "Package" in fields:
                names.add(fields["Package"])
        return names

    def missing(self, packages: Iterable[str]) -> list[str]:
        have = self.installed() if self.ready else set()
        return [p for p in packages if p not in have]

    # -- making it -------------------------------------------------------------------------------------
    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.parent / f"{self.path.name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ensure(self, packages: Iterable[str] = ()) -> DebianRoot:
        """Make the root if absent and install ``packages`` not installed yet; idempotent and race-free."""
        packages = list(packages)
        if not self.missing(packages):
            return self
        self._check_can_build()
        with self._lock():
            if not self.ready:
                self._debootstrap()
            todo = self.missing(packages)
            if todo:
                self._apt("update")
                self._apt("install", "-y", "--no-install-recommends", *todo)
                still = self.missing(todo)
                if still:
                    raise RootUnavailable(f"apt-get did not install {', '.join(still)} into {self.path}")
        return self

    def _check_can_build(self) -> None:
        if os.geteuid() != 0:
            raise RootUnavailable(f"making the Debian {self.suite} root {self.path} needs root (debootstrap, chroot)")
        if shutil.which("debootstrap") is None:
            raise RootUnavailable("debootstrap is not installed (apt-get install debootstrap; .ci/run does)")

    def _debootstrap(self) -> None:
        partial = self.path.with_name(f"{self.path.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        log = self.path.with_name(f"{self.path.name}.debootstrap.log")
        started = time.monotonic()
        with open(log, "w") as out:
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", self.suite, str(partial), self.mirror],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=1800,
            )
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RootUnavailable(f"debootstrap {self.suite} from {self.mirror} failed (log {log}):\n{tail}")
        (partial / "etc/apt/apt.conf.d/99airflow-ha").write_text(APT_CONF)
        policy = partial / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        partial.rename(self.path)
        with open(log, "a") as out:
            out.write(f"\nairflow-ha: debootstrap took {time.monotonic() - started:.1f} s\n")

    def _apt(self, *args: str) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LANG": "C.UTF-8"}
        cmd = ["chroot", str(self.path), "apt-get", "-q", *args]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=1800)
        if result.returncode != 0:
            raise RootUnavailable(
                f"apt-get {' '.join(args)} in {self.path} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    # -- running its binaries on the host ------------------------------------------------------------
    def path_of(self, inside: str) -> Path:
        """The host path of ``inside`` (an absolute path in the root, e.g. ``/usr/lib/mysql/plugin``)."""
        return self.path / inside.lstrip("/")

    @property
    def library_dirs(self) -> list[Path]:
        """The root's library search path (its ld.so.conf.d, then the default dirs), as host paths."""
        dirs: list[str] = []
        conf_dir = self.path / "etc/ld.so.conf.d"
        for conf in sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []:
            for line in conf.read_text(errors="replace").splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("/"):
                    dirs.append(line)
        dirs += ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"]
        out: list[Path] = []
        for d in dirs:
            host = self.path_of(d)
            if host.is_dir() and host.resolve() not in {p.resolve() for p in out}:
                out.append(host)
        return out

    def argv(self, binary: str, *args: str) -> list[str]:
        """Run ``binary`` (a path in the root such as ``/usr/sbin/mysqld``) on the host with the root's libraries."""
        program = self.path_of(binary)
        if not program.is_file():
            raise RootUnavailable(f"{binary} is not in {self.path} (its package is not installed)")
        return [
            str(self.path / LOADER),
            "--library-path",
            ":".join(str(d) for d in self.library_dirs),
            "--argv0",
            str(program),
            str(program),
            *args,
        ]

    def shims(self, binaries: dict[str, str]) -> Path:
        """A directory of ``name`` scripts that ``exec`` :meth:`argv` of each path in the root.

        For code that runs a server by its name on ``PATH`` (``redis-server``): prepend the directory.
        ``exec`` keeps the PID, so the process is still stopped by the PID its caller got.
        """
        bin_dir = self.path.with_name(f"{self.path.name}.bin")
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, inside in binaries.items():
            argv = shlex.join(self.argv(inside))
            script = f'#!/bin/sh\n# airflow-ha: {inside} from {self.path}\nexec {argv} "$@"\n'
            target = bin_dir / name
            if target.is_file() and target.read_text() == script:
                continue
            tmp = bin_dir / f".{name}.{os.getpid()}"
            tmp.write_text(script)
            tmp.chmod(0o755)
            tmp.replace(target)
        return bin_dir


def server_root(packages: Iterable[str], *, suite: str = DEFAULT_SUITE) -> DebianRoot:
    """The default root of ``suite`` with ``packages`` installed (made on first use)."""
    return DebianRoot.default(suite).ensure(packages)
