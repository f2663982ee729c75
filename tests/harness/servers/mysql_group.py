"""A real MySQL Group Replication group on 127.0.0.1: N mysqld 9.7 (the Debian unstable root of
:mod:`tests.harness.servers.mysql`), one ``airflow-ha mysql-agent`` process per member and a real HAProxy
(the host's Debian ``haproxy``) in front, configured like the chart's (``option httpchk GET /primary``
against each agent, ``on-marked-down shutdown-sessions``).

Each member's server gets what the chart's StatefulSet passes (GTIDs on, its server id, report host/port,
non-transactional engines disabled); everything Group Replication needs beyond that is done by the agent,
as in the cluster. A fresh data dir is made like the image's entrypoint makes one: users and the database
without a GTID (here: ``RESET BINARY LOGS AND GTIDS`` after the setup), so first-install members are empty.

Members are supervised like a kubelet would: a server that exits on its own (the restart after a CLONE)
is started again; one stopped or SIGKILLed by the caller is not, until :meth:`Member.restart`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.failover.backend import fetch_all
from tests.harness.servers.mysql import MySQL
from tests.harness.servers.process import ServerStartError, free_port, log_tail, stop_process
from tests.harness.waiting import wait_until

HAPROXY_CONFIG = """\
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout check 2s
frontend mysql
    bind 127.0.0.1:{port}
    default_backend primary
backend primary
    balance first
    option httpchk GET /primary
    http-check expect status 200
    default-server inter {inter}ms fastinter {inter}ms downinter {inter}ms fall 2 rise 1
    default-server on-marked-down shutdown-sessions
{servers}
"""


class GroupMember(MySQL):
    """One member's mysqld: the chart's Group Replication server args on top of :class:`MySQL`'s."""

    def __init__(self, *args, index: int, group_port: int, **kwargs):
        self.index = index
        self.group_port = group_port
        self._intentional = True
        self._supervisor: threading.Thread | None = None
        self.restarts = 0
        super().__init__(*args, **kwargs)

    def _server_args(self) -> list[str]:
        return [
            *super()._server_args(),
            f"--server-id={self.index + 1}",
            "--gtid-mode=ON",
            "--enforce-gtid-consistency=ON",
            "--report-host=127.0.0.1",
            f"--report-port={self.port}",
            "--disabled-storage-engines=MyISAM,BLACKHOLE,FEDERATED,ARCHIVE,MEMORY",
            "--skip-replica-start",
            "--loose-group-replication-start-on-boot=OFF",
        ]

    def start(self) -> GroupMember:
        fresh = not self.data_dir.exists()
        super().start()
        if fresh:
            self.root_sql(
                f"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '{self.root_password}';"
                "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
                "RESET BINARY LOGS AND GTIDS;"
            )
        self._supervise()
        return self

    # -- supervision (a kubelet restarting the container) ------------------------------------------
    def _supervise(self) -> None:
        self._intentional = False
        if self._supervisor is None or not self._supervisor.is_alive():
            self._supervisor = threading.Thread(target=self._watch, name=f"mysql-{self.index}", daemon=True)
            self._supervisor.start()

    def _watch(self) -> None:
        while True:
            proc = self.proc
            if proc is None:
                return
            proc.wait()
            if self._intentional:
                return
            time.sleep(0.5)
            if self._intentional:
                return
            self.restarts += 1
            try:
                self._launch()
            except Exception:  # the next look (or the test) sees it down
                return

    def kill(self) -> None:
        self._intentional = True
        super().kill()

    def stop(self) -> None:
        self._intentional = True
        super().stop()

    def restart(self) -> None:
        super().restart()
        self._supervise()

    def wipe(self) -> None:
        """Lose the data dir (a new volume): the next :meth:`start` initialises it afresh."""
        if self.running:
            raise RuntimeError("stop or kill the member first")
        shutil.rmtree(self.data_dir)


@dataclass
class Agent:
    index: int
    proc: subprocess.Popen
    http_port: int
    log_path: Path


@dataclass
class MySQLGroup:
    base_dir: Path
    password: str  # the airflow user's
    size: int = 3
    root_password: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    recovery_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    group_name: str = field(default_factory=lambda: str(uuid.uuid4()))
    clone_threshold: int | None = 100
    member_expel_timeout: int = 0
    unreachable_majority_timeout: int = 20
    check_interval_ms: int = 500  # HAProxy's (the chart's mysql.proxy.checkIntervalMs: 1000)
    agent_interval: float = 0.5  # seconds between the agents' looks (mysql.groupReplication.agent.interval: 1)
    members: list[GroupMember] = field(default_factory=list)
    agents: list[Agent | None] = field(default_factory=list)
    haproxy: subprocess.Popen | None = None
    proxy_port: int = 0

    def __post_init__(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.size):
            self.members.append(
                GroupMember(
                    base_dir=self.base_dir / f"member-{i}",
                    password=self.password,
                    root_password=self.root_password,
                    index=i,
                    group_port=free_port(),
                )
            )
        self.agents = [None] * self.size

    # -- addresses -----------------------------------------------------------------------------------
    @property
    def sqlalchemy_url(self) -> str:
        return f"mysql+mysqldb://airflow:{self.password}@127.0.0.1:{self.proxy_port}/airflow"

    def agent_argv(self, index: int) -> list[str]:
        mysql = ",".join(f"127.0.0.1:{m.port}" for m in self.members)
        group = ",".join(f"127.0.0.1:{m.group_port}" for m in self.members)
        argv = [
            sys.executable,
            "-m",
            "airflow_ha.cli",
            "mysql-agent",
            f"--index={index}",
            f"--members={mysql}",
            f"--group-members={group}",
            f"--group-name={self.group_name}",
            "--ip-allowlist=127.0.0.1/8",
            f"--member-expel-timeout={self.member_expel_timeout}",
            f"--unreachable-majority-timeout={self.unreachable_majority_timeout}",
            f"--interval={self.agent_interval}",
            "--http-host=127.0.0.1",
            f"--http-port={self.agents[index].http_port if self.agents[index] else 0}",
        ]
        if self.clone_threshold is not None:
            argv.append(f"--clone-threshold={self.clone_threshold}")
        return argv

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> MySQLGroup:
        """Servers (in parallel), then every agent, then HAProxy; does not wait for the group."""
        errors: list[BaseException] = []

        def start_one(m: GroupMember) -> None:
            try:
                m.port = m.port or free_port()
                m.start()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(m,)) for m in self.members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for i in range(self.size):
            self.start_agent(i)
        self.start_haproxy()
        return self

    def start_agent(self, index: int) -> Agent:
        port = self.agents[index].http_port if self.agents[index] else free_port()
        log_path = self.base_dir / f"agent-{index}.log"
        self.agents[index] = Agent(index, None, port, log_path)  # type: ignore[arg-type]
        env = dict(os.environ)
        env.update(
            {"MYSQL_ROOT_PASSWORD": self.root_password, "AIRFLOW_HA_MYSQL_RECOVERY_PASSWORD": self.recovery_password}
        )
        with open(log_path, "a") as out:
            proc = subprocess.Popen(
                self.agent_argv(index), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.agents[index].proc = proc
        return self.agents[index]

    def start_haproxy(self) -> None:
        self.proxy_port = self.proxy_port or free_port()
        servers = "\n".join(
            f"    server m{i} 127.0.0.1:{m.port} check port {self.agents[i].http_port}"
            for i, m in enumerate(self.members)
        )
        cfg = self.base_dir / "haproxy.cfg"
        cfg.write_text(
            HAPROXY_CONFIG.format(port=self.proxy_port, inter=self.check_interval_ms, servers=servers),
            encoding="utf-8",
        )
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():
            raise ServerStartError("haproxy is not installed (apt-get install haproxy; .ci/run does)")
        check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise ServerStartError(f"haproxy -c failed:\n{check.stdout}\n{check.stderr}")
        with open(self.base_dir / "haproxy.log", "a") as out:
            self.haproxy = subprocess.Popen(
                [haproxy, "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def stop(self) -> None:
        if self.haproxy is not None:
            stop_process(self.haproxy, timeout=10)
        for agent in self.agents:
            if agent is not None and agent.proc is not None:
                stop_process(agent.proc, timeout=10)
        for m in self.members:
            m.stop()

    # -- looking -------------------------------------------------------------------------------------
    def sql(self, index: int, query: str) -> list[tuple]:
        import MySQLdb

        m = self.members[index]
        conn = MySQLdb.connect(
            host="127.0.0.1", port=m.port, user="root", passwd=self.root_password, connect_timeout=2, autocommit=True
        )
        return fetch_all(conn, query)

    def states(self) -> dict[int, tuple[str, str]]:
        """Each member's own (MEMBER_STATE, MEMBER_ROLE); ("DOWN", "") when its server does not answer."""
        return self.states_of(range(self.size))

    def states_of(self, indexes) -> dict[int, tuple[str, str]]:
        out: dict[int, tuple[str, str]] = {}
        for i in indexes:
            m = self.members[i]
            if not m.running:
                out[i] = ("DOWN", "")
                continue
            try:
                rows = self.sql(
                    i,
                    "SELECT MEMBER_STATE, MEMBER_ROLE FROM performance_schema.replication_group_members "
                    "WHERE MEMBER_ID = @@server_uuid",
                )
            except Exception:
                out[i] = ("DOWN", "")
                continue
            out[i] = (rows[0][0], rows[0][1] or "") if rows else ("OFFLINE", "")
        return out

    def primaries(self) -> list[int]:
        return [i for i, (state, role) in self.states().items() if state == "ONLINE" and role == "PRIMARY"]

    def wait_online(self, indexes: list[int] | None = None, timeout: float = 120) -> float:
        """Seconds until every member of ``indexes`` (default all) is ONLINE with exactly one PRIMARY."""
        indexes = list(range(self.size)) if indexes is None else indexes
        started = time.monotonic()

        def done() -> bool:
            states = self.states()
            online = all(states[i][0] == "ONLINE" for i in indexes)
            return online and sum(1 for s, r in states.values() if s == "ONLINE" and r == "PRIMARY") == 1

        try:
            wait_until(done, timeout, f"members {indexes} ONLINE with one PRIMARY", interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.states()}\n{self.diagnostics()}") from exc
        return time.monotonic() - started

    def diagnostics(self) -> str:
        parts = []
        for i, m in enumerate(self.members):
            parts.append(f"--- member {i} mysqld log:\n{log_tail(m.log_path, 15)}")
            if self.agents[i] is not None:
                parts.append(f"--- agent {i}:\n{log_tail(self.agents[i].log_path, 15)}")
        return "\n".join(parts)
