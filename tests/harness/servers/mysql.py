"""A real MySQL 9.7 server on 127.0.0.1 with an ``airflow`` database and user.

The server is Debian unstable's ``mysqld`` 9.7 (``mysql-server-core``, the package the chart's image
installs), run on this host from the cached root of :mod:`tests.harness.servers.debian_root`. It gets its own
data dir, socket and a free port; the data dir is made with ``--initialize-insecure`` and root then gets
a password, so every later connection authenticates as the chart's do (``caching_sha2_password``). The
process is a plain child: stopped or killed by its PID and started again on the same data.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.servers.debian_root import DebianRoot, server_root
from tests.harness.servers.process import ServerStartError, free_port, kill_process, log_tail, stop_process
from tests.harness.servers.tls import TlsFiles
from tests.harness.waiting import wait_until

MYSQL_PACKAGES = ("mysql-server-core", "mysql-client-core")
# The chart's server args (values.yaml mysql.args) use the same character set and collation.
CHARSET = "utf8mb4"
COLLATION = "utf8mb4_unicode_ci"


@dataclass
class MySQL:
    base_dir: Path
    password: str
    database: str = "airflow"
    user: str = "airflow"
    port: int = 0
    proc: subprocess.Popen | None = None
    root_password: str = field(default_factory=lambda: secrets.token_hex(12))
    root: DebianRoot | None = None  # default: the Debian unstable root with MYSQL_PACKAGES (made on first use)
    # TLS with these files, and TCP clients refused without it (require_secure_transport), as managed MySQL
    # services can be set; the root client's socket counts as secure
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = server_root(MYSQL_PACKAGES)
        self.data_dir = self.base_dir / "data"
        self.socket = self.base_dir / "mysqld.sock"
        self.log_path = self.base_dir / "mysqld.log"
        self.client_cnf = self.base_dir / "root-client.cnf"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def sqlalchemy_url(self) -> str:
        return f"mysql+mysqldb://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def _mysqld(self, *args: str) -> list[str]:
        share = self.root.path_of("/usr/share/mysql")
        argv = self.root.argv(
            "/usr/sbin/mysqld",
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--log-error={self.log_path}",
            # compiled-in paths point into /usr of the root, not of this host
            f"--plugin-dir={self.root.path_of('/usr/lib/mysql/plugin')}",
            f"--lc-messages-dir={share}",
            f"--character-sets-dir={share / 'charsets'}",
            "--secure-file-priv=NULL",
            *args,
        )
        if os.geteuid() == 0:
            argv.append("--user=root")
        return argv

    def _server_args(self) -> list[str]:
        return self._mysqld(
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            "--mysqlx=OFF",  # X Protocol would listen on 33060 for every server started here
            f"--pid-file={self.base_dir / 'mysqld.pid'}",
            f"--character-set-server={CHARSET}",
            f"--collation-server={COLLATION}",
            "--innodb-buffer-pool-size=128M",
            "--max-connections=500",
            "--skip-name-resolve",
            *self._tls_args(),
        )

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return [f"--ssl-ca={self.tls.ca}", f"--ssl-cert={self.tls.cert}", f"--ssl-key={self.tls.key}",
                "--require-secure-transport=ON"]  # fmt: skip

    def start(self) -> MySQL:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.client_cnf.write_text(
            f"[client]\nuser=root\npassword={self.root_password}\nsocket={self.socket}\n", encoding="utf-8"
        )
        self.client_cnf.chmod(0o600)
        if not self.data_dir.exists():
            result = subprocess.run(
                self._mysqld("--initialize-insecure"), capture_output=True, text=True, check=False, timeout=300
            )
            if result.returncode != 0:
                raise ServerStartError(
                    f"mysqld --initialize-insecure failed:\n{result.stdout}\n{result.stderr}\n{log_tail(self.log_path)}"
                )
            self._launch(root_has_password=False)
            self._root_client(
                f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{self.root_password}';", password=False, check=True
            )
            self._create_database()
        else:
            self._launch()
        return self

    def _launch(self, root_has_password: bool = True) -> None:
        self.proc = subprocess.Popen(
            self._server_args(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_until(lambda: self._answers(root_has_password), 60, f"mysqld on 127.0.0.1:{self.port}", interval=0.2)
        except TimeoutError as exc:
            raise ServerStartError(f"{exc}\n{log_tail(self.log_path)}") from exc

    def _answers(self, root_has_password: bool = True) -> bool:
        if not self.running:
            raise ServerStartError(f"mysqld exited:\n{log_tail(self.log_path)}")
        return self._root_client("SELECT 1", password=root_has_password, check=False).returncode == 0

    def _root_client(self, sql: str, *, password: bool = True, check: bool = True) -> subprocess.CompletedProcess:
        auth = [f"--defaults-file={self.client_cnf}"] if password else ["--no-defaults", f"--socket={self.socket}"]
        return subprocess.run(
            self.root.argv("/usr/bin/mysql", *auth, "-uroot", "-N", "-B", "-e", sql),
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def root_sql(self, sql: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``sql`` (``;``-separated statements) as root over the socket; ``-N -B`` output."""
        return self._root_client(sql, check=check)

    def _create_database(self) -> None:
        self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (if absent) for this server's user; returns its Airflow connection URI."""
        self.root_sql(
            f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET {CHARSET} COLLATE {COLLATION};"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.user}'@'%';"
            f"CREATE USER IF NOT EXISTS '{self.user}'@'localhost' IDENTIFIED BY '{self.password}';"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.user}'@'localhost';"
        )
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{name}"

    def version(self) -> str:
        return self.root_sql("SELECT VERSION()").stdout.strip()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=30)

    def kill(self) -> None:
        if self.proc is not None:
            kill_process(self.proc)

    def restart(self) -> None:
        """Start again on the same port and data dir (after ``stop`` or ``kill``)."""
        self._launch()
