"""A real MariaDB server on 127.0.0.1 with an ``airflow`` database and user.

MariaDB 10.11 (Debian's ``mariadb-server``) stands in for MySQL 8 in local tests, because no MySQL 8
server can be installed on these machines; the Helm chart deploys MySQL 8.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from airflow_ha.local.process import (
    ServerStartError,
    free_port,
    kill_process,
    log_tail,
    stop_process,
    wait_until,
)


@dataclass
class MariaDB:
    base_dir: Path
    password: str
    database: str = "airflow"
    user: str = "airflow"
    port: int = 0
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        for binary in ("mariadb-install-db", "mariadbd", "mariadb"):
            if shutil.which(binary) is None:
                raise ServerStartError(f"{binary} is not installed (Debian package mariadb-server)")
        self.data_dir = self.base_dir / "data"
        self.socket = self.base_dir / "mysqld.sock"
        self.log_path = self.base_dir / "mariadb.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def sqlalchemy_url(self) -> str:
        return f"mysql+mysqldb://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _server_args(self) -> list[str]:
        args = [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--log-error={self.log_path}",
            f"--pid-file={self.base_dir / 'mariadb.pid'}",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--explicit-defaults-for-timestamp=ON",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=500",
            "--skip-name-resolve",
        ]
        if os.geteuid() == 0:
            args.append("--user=root")
        return args

    def start(self) -> MariaDB:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        if not self.data_dir.exists():
            install = [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data_dir}",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ]
            if os.geteuid() == 0:
                install.append("--user=root")
            result = subprocess.run(install, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ServerStartError(f"mariadb-install-db failed:\n{result.stdout}\n{result.stderr}")
            self._launch()
            self._create_database()
        else:
            self._launch()
        return self

    def _launch(self) -> None:
        self.proc = subprocess.Popen(
            self._server_args(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(self._answers, 60, f"mariadbd on 127.0.0.1:{self.port}", interval=0.2)
        except TimeoutError as exc:
            raise ServerStartError(f"{exc}\n{log_tail(self.log_path)}") from exc

    def _answers(self) -> bool:
        if not self.running:
            raise ServerStartError(f"mariadbd exited:\n{log_tail(self.log_path)}")
        return self.root_sql("SELECT 1", check=False).returncode == 0

    def root_sql(self, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", sql],
            capture_output=True,
            text=True,
            check=check,
        )

    def _create_database(self) -> None:
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (if absent) for this server's user; returns its Airflow connection URI."""
        self.root_sql(
            f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.user}'@'%';"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'localhost' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.user}'@'localhost';"
            "FLUSH PRIVILEGES;"
        )
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=30)

    def kill(self) -> None:
        if self.proc is not None:
            kill_process(self.proc)

    def restart(self) -> None:
        """Start again on the same port and data dir (after ``stop`` or ``kill``)."""
        self._launch()
