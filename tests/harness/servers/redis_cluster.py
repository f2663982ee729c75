"""A real Redis Cluster of ``redis-server`` processes on 127.0.0.1, for tests and the local backend.

Every node has its own data dir, ``requirepass`` and ``masterauth``; the cluster is formed by
``redis-cli --cluster create`` exactly as an operator would. Nodes can be killed (SIGKILL) and
restarted on the same port with their ``nodes.conf``, so failover can be exercised for real. With ``tls``
every connection (clients, replication, the cluster bus) is TLS, as on a managed cluster with in-transit
encryption; ``acl_user`` adds a second user besides the ``default`` one (``AUTH user password``).

The binaries are Redis 8 from Debian unstable, run from the cached root of
:mod:`tests.harness.servers.debian_root` (made on first use), the same Redis the chart's image ships;
``AIRFLOW_HA_REDIS_BIN_DIR`` names a directory holding other ``redis-server`` and ``redis-cli``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.harness.servers.debian_root import server_root
from tests.harness.servers.process import (
    ServerStartError,
    free_port,
    freeze_process,
    kill_process,
    log_tail,
    stop_process,
)
from tests.harness.servers.tls import TlsFiles
from tests.harness.waiting import wait_until

CLUSTER_BUS_OFFSET = 10000
REDIS_PACKAGES = ("redis-server", "redis-tools")
REDIS_BINARIES = {"redis-server": "/usr/bin/redis-server", "redis-cli": "/usr/bin/redis-cli"}


def redis_bin_dir() -> Path:
    """``$AIRFLOW_HA_REDIS_BIN_DIR``, or the Debian-unstable root's Redis 8 as ``redis-*`` shims.

    Raises :class:`ServerStartError` (``RootUnavailable``) with the reason when neither can be had.
    """
    override = os.environ.get("AIRFLOW_HA_REDIS_BIN_DIR")
    if override:
        bin_dir = Path(override)
        missing = [name for name in REDIS_BINARIES if not (bin_dir / name).is_file()]
        if missing:
            raise ServerStartError(f"AIRFLOW_HA_REDIS_BIN_DIR={override} has no {', '.join(missing)}")
        return bin_dir
    return server_root(REDIS_PACKAGES).shims(REDIS_BINARIES)


@dataclass
class RedisNode:
    port: int
    data_dir: Path
    password: str
    proc: subprocess.Popen | None = None
    tls: TlsFiles | None = None
    frozen: bool = False  # SIGSTOPped: the process runs but answers nothing, so probes must not ask it

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def client(self, **kwargs) -> redis.Redis:
        if self.tls is not None:
            kwargs = {"ssl": True, "ssl_ca_certs": str(self.tls.ca), **kwargs}
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def info(self, section: str) -> dict:
        with self.client(socket_timeout=2) as conn:
            return conn.info(section)

    def cluster_info(self) -> dict:
        with self.client(socket_timeout=2, decode_responses=True) as conn:
            raw = conn.execute_command("CLUSTER INFO")
        if isinstance(raw, dict):
            return raw
        return dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)

    def role(self) -> str:
        return self.info("replication")["role"]

    def node_id(self) -> str:
        with self.client(socket_timeout=2, decode_responses=True) as conn:
            return conn.execute_command("CLUSTER MYID")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def answering(self) -> bool:
        return self.running and not self.frozen

    def freeze(self) -> None:
        """SIGSTOP: a hung server or a node cut off mid-connection; its peers' sockets stay open."""
        assert self.proc is not None
        freeze_process(self.proc.pid)
        self.frozen = True

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    @contextlib.contextmanager
    def frozen_for(self) -> Iterator[None]:
        """Frozen inside the block, thawed however it ends."""
        self.freeze()
        try:
            yield
        finally:
            self.thaw()


@dataclass
class RedisCluster:
    """``masters`` masters with ``replicas_per_master`` replicas each, all on 127.0.0.1."""

    base_dir: Path
    password: str
    masters: int = 3
    replicas_per_master: int = 1
    node_timeout_ms: int = 2000
    nodes: list[RedisNode] = field(default_factory=list)
    bin_dir: Path | None = None  # default: redis_bin_dir()
    tls: TlsFiles | None = None
    acl_user: tuple[str, str] | None = None  # (name, password): every key, channel and command

    def __post_init__(self) -> None:
        if self.bin_dir is None:
            self.bin_dir = redis_bin_dir()

    def binary(self, name: str) -> str:
        """Path of ``redis-server`` or ``redis-cli`` as this cluster runs it."""
        return str(self.bin_dir / name)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> RedisCluster:
        count = self.masters * (1 + self.replicas_per_master)
        for index in range(count):
            data_dir = self.base_dir / f"node-{index}"
            data_dir.mkdir(parents=True, exist_ok=True)
            node = RedisNode(
                port=free_port(CLUSTER_BUS_OFFSET), data_dir=data_dir, password=self.password, tls=self.tls
            )
            self.nodes.append(node)
            self.start_node(node)
        self.create()
        return self

    def _write_config(self, node: RedisNode) -> Path:
        conf = node.data_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    *self._listen_lines(node),
                    "protected-mode yes",
                    "daemonize no",
                    f"dir {node.data_dir}",
                    f"logfile {node.log_path}",
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    f"cluster-node-timeout {self.node_timeout_ms}",
                    # Replicas of a killed master take over even if briefly disconnected themselves.
                    "cluster-replica-validity-factor 0",
                    f'requirepass "{self.password}"',
                    f'masterauth "{self.password}"',
                    "appendonly yes",
                    "appendfsync always",  # as the chart: an acknowledged write survives a crash-restart
                    'save ""',
                    *([f"user {self.acl_user[0]} on >{self.acl_user[1]} ~* &* +@all"] if self.acl_user else []),
                    "",
                ]
            )
        )
        return conf

    def _listen_lines(self, node: RedisNode) -> list[str]:
        if self.tls is None:
            return [f"port {node.port}"]
        return [
            "port 0",
            f"tls-port {node.port}",
            f"tls-cert-file {self.tls.cert}",
            f"tls-key-file {self.tls.key}",
            f"tls-ca-cert-file {self.tls.ca}",
            "tls-auth-clients no",  # as managed services: the server is verified, clients use AUTH
            "tls-cluster yes",
            "tls-replication yes",
        ]

    def cli_tls_args(self) -> list[str]:
        return [] if self.tls is None else ["--tls", "--cacert", str(self.tls.ca)]

    def start_node(self, node: RedisNode) -> None:
        conf = self._write_config(node)
        node.frozen = False
        node.proc = subprocess.Popen(
            [self.binary("redis-server"), str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(lambda: self._pings(node), 15, f"redis-server on {node.address}")
        except TimeoutError as exc:
            raise ServerStartError(f"{exc}\n{log_tail(node.log_path)}") from exc

    @staticmethod
    def _pings(node: RedisNode) -> bool:
        if not node.running:
            raise ServerStartError(f"redis-server on {node.address} exited:\n{log_tail(node.log_path)}")
        try:
            with node.client(socket_timeout=1) as conn:
                return bool(conn.ping())
        except redis.RedisError:
            return False

    def create(self) -> None:
        cmd = [
            self.binary("redis-cli"),
            "-a",
            self.password,
            "--no-auth-warning",
            *self.cli_tls_args(),
            "--cluster",
            "create",
            *[n.address for n in self.nodes],
            "--cluster-replicas",
            str(self.replicas_per_master),
            "--cluster-yes",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise ServerStartError(f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}")
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        """Every running node reports ``cluster_state:ok``, the expected number of masters, and the
        same slot owners: after a failover the new config epoch reaches the other nodes by gossip,
        and until it has, one node's CLUSTER SLOTS may still name the old master."""

        def healthy() -> bool:
            try:
                running = [n for n in self.nodes if n.answering]
                if not all(n.cluster_info().get("cluster_state") == "ok" for n in running):
                    return False
                if len(self.master_nodes()) != self.masters:
                    return False
                return len({self._slot_owners(n) for n in running}) == 1
            except redis.RedisError:
                return False

        wait_until(healthy, timeout, "cluster_state:ok and one slot map on every node", interval=0.2)

    @staticmethod
    def _slot_owners(node: RedisNode) -> frozenset[tuple[int, int, int]]:
        """``(first slot, last slot, master port)`` for every range in ``node``'s CLUSTER SLOTS."""
        with node.client(socket_timeout=2) as conn:
            return frozenset(
                (int(start), int(end), int(master[1]))
                for start, end, master, *_replicas in conn.execute_command("CLUSTER SLOTS")
            )

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                stop_process(node.proc)

    # -- failure injection -------------------------------------------------------------------------
    def kill(self, node: RedisNode) -> None:
        """SIGKILL one node, as a crash or a lost pod would."""
        assert node.proc is not None
        kill_process(node.proc)

    def restart(self, node: RedisNode) -> None:
        """Start a killed node again on its port with its nodes.conf: it rejoins the cluster."""
        self.start_node(node)

    # -- topology ----------------------------------------------------------------------------------
    def master_nodes(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.answering and n.role() == "master"]

    def replica_nodes(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.answering and n.role() == "slave"]

    def node_by_port(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def master_for_slot(self, slot: int) -> RedisNode:
        """The master that serves ``slot`` according to the CLUSTER SLOTS of a node that answers."""
        probe = next(n for n in self.nodes if n.answering)
        for start, end, master_port in self._slot_owners(probe):
            if start <= slot <= end:
                return self.node_by_port(master_port)
        raise LookupError(f"slot {slot} is not served by any master")

    def replicas_of(self, master: RedisNode) -> list[RedisNode]:
        out = []
        for node in self.nodes:
            if node.answering and node is not master:
                info = node.info("replication")
                if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                    out.append(node)
        return out

    @property
    def seed_addresses(self) -> list[str]:
        return [n.address for n in self.nodes]

    def url(self, scheme: str = "rediscluster") -> str:
        """Broker URL listing every node as a seed, with the password; with TLS, redisclusters:// and the CA."""
        hosts = ",".join(n.address for n in self.nodes)
        if self.tls is not None:
            return f"redisclusters://:{self.password}@{hosts}?ssl_ca_certs={self.tls.ca}"
        return f"{scheme}://:{self.password}@{hosts}"
