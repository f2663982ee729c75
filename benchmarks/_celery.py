"""Shared by ``broker_scaling`` and ``soak``: servers, Celery apps configured as Airflow does, workers.

Only public things of the product are used: the ``rediscluster://`` URL, ``airflow_ha.broker.celery_config``
and ``tests.harness.servers.redis_cluster.RedisCluster`` (no transport internals, which are being refactored).

The Celery config of both brokers is built the way Airflow builds it: ``[celery] broker_url`` (here
``AIRFLOW__CELERY__BROKER_URL``) read by the Celery provider's ``DEFAULT_CELERY_CONFIG``; for
``rediscluster://`` that dict goes through ``airflow_ha.broker.celery_config.build`` (what
``[celery] celery_config_options = airflow_ha.broker.celery_config.CELERY_CONFIG`` does on the pods).
Every process started here is started with its own session and stopped by its PID / process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from tests.harness.servers.process import free_port
from tests.harness.servers.redis_cluster import RedisCluster, RedisNode, redis_bin_dir
from tests.harness.waiting import wait_until

# The worker-side app module: the config comes from the product (ours) or from Airflow (stock), nothing
# broker-related is set here. A task records its id when it starts, one line appended to a file per
# process (O_APPEND writes of one line are atomic), before doing anything else.
APP_MODULE = """
import os, time
if os.environ["HARNESS_BROKER"].startswith("ours"):
    from airflow_ha.broker.celery_config import CELERY_CONFIG as CONFIG
else:
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG as CONFIG
from celery import Celery

app = Celery("harnessapp", config_source=CONFIG)
OUT_DIR = os.environ["HARNESS_OUT_DIR"]


def _record(line):
    fd = os.open(os.path.join(OUT_DIR, "runs-%d.log" % os.getpid()), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode())
    finally:
        os.close(fd)


@app.task(name="harness.noop", bind=True, ignore_result=True)
def noop(self, sent=0.0):
    _record("%s %.6f %.6f" % (self.request.id, sent, time.time()))
"""

TASK = "harness.noop"


def airflow_env(home: Path, url: str, broker: str, out_dir: Path) -> dict[str, str]:
    """The environment of an Airflow component whose ``[celery] broker_url`` is ``url``."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CELERY__BROKER_URL": url,
        "HARNESS_BROKER": broker,
        "HARNESS_OUT_DIR": str(out_dir),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def client_config(url: str, broker: str) -> dict:
    """The Celery config a scheduler with ``[celery] broker_url = url`` publishes with (this process)."""
    saved = {k: os.environ.get(k) for k in ("AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__LOGGING__LOGGING_LEVEL")}
    os.environ["AIRFLOW__CELERY__BROKER_URL"] = url
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")  # quiet in this process only
    try:
        from airflow.providers.celery.executors.default_celery import get_default_celery_config
        from airflow.providers.common.compat.sdk import conf

        base = get_default_celery_config(conf)
    finally:  # never leak into the workers' environment (they must log INFO: " ready.")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if broker.startswith("ours"):  # ours, ours-nowait (an option in the URL): the product's config
        from airflow_ha.broker import celery_config

        return celery_config.build(base)
    return base


def client_app(url: str, broker: str):
    from celery import Celery

    return Celery(f"harness-client-{broker}", config_source=client_config(url, broker), set_as_current=False)


# -- servers ----------------------------------------------------------------------------------------------
def redis_server() -> str:
    """The ``redis-server`` the local cluster runs (same version for both brokers); else the one on PATH."""
    try:
        return str(redis_bin_dir() / "redis-server")
    except Exception:  # no cached root and none can be made: the host's
        return "redis-server"


def redis_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return next((w.removeprefix("v=") for w in out.split() if w.startswith("v=")), out.strip())


@dataclass
class PlainRedis:
    """One stock ``redis-server`` as a user would run it for Celery: AOF on, fsync every second."""

    base_dir: Path
    password: str
    appendonly: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        return [
            redis_server(), "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
            "--dir", str(self.base_dir), "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec", "--logfile", str(self.base_dir / "redis.log"),
        ]  # fmt: skip

    @property
    def persistence(self) -> str:
        return "appendonly yes, appendfsync everysec, no RDB" if self.appendonly else "no persistence"

    def start(self) -> PlainRedis:
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(lambda: self.proc.poll() is None and self._pings(), 30, f"redis-server on {self.port}")
        return self

    def _pings(self) -> bool:
        try:
            with self.client(socket_timeout=1) as conn:
                return bool(conn.ping())
        except redis.RedisError:
            return False

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def live_clients(cluster: RedisCluster | None, plain: PlainRedis | None, skip=()) -> list[redis.Redis]:
    if plain is not None:
        return [plain.client(socket_timeout=3)]
    return [n.client(socket_timeout=3) for n in cluster.nodes if n.running and n not in skip]


def commandstats(clients) -> Counter:
    """Calls per command summed over ``clients``; the INFO call that reads them is not counted."""
    total: Counter = Counter()
    for conn in clients:
        stats = conn.info("commandstats")
        for name, value in stats.items():
            total[name.removeprefix("cmdstat_")] += int(value["calls"])
        total["info"] -= 1
    return total


def thaw_all(cluster: RedisCluster) -> None:
    for node in cluster.nodes:
        if node.proc is not None and node.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node.proc.pid, signal.SIGCONT)


def roles(cluster: RedisCluster, skip: tuple[RedisNode, ...] = ()) -> dict[int, str]:
    """port -> role of every running node not in ``skip`` that answers within 1 s."""
    out = {}
    for node in cluster.nodes:
        if not node.running or node in skip:
            continue
        try:
            with node.client(socket_timeout=1, socket_connect_timeout=1) as conn:
                out[node.port] = conn.info("replication")["role"]
        except redis.RedisError:
            continue
    return out


def wait_in_sync(cluster: RedisCluster, timeout: float = 60) -> None:
    def ok() -> bool:
        try:
            return all(r.info("replication").get("master_link_status") == "up" for r in cluster.replica_nodes())
        except redis.RedisError:
            return False

    wait_until(ok, timeout, "replicas in sync", 0.2)


# -- workers ----------------------------------------------------------------------------------------------
@dataclass
class Worker:
    name: str
    argv: list[str]
    env: dict
    cwd: Path
    proc: subprocess.Popen | None = None
    exits: list[int] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return self.cwd / f"{self.name}.log"

    def start(self) -> Worker:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited {self.proc.returncode}:\n{self.log()[-3000:]}")
        return " ready." in self.log()

    def stop(self, timeout: float = 20) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of the worker's own process group (its pool children)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@dataclass
class WorkerSet:
    """``celery worker`` subprocesses of one app module, each ``-n name@localhost``."""

    workdir: Path
    url: str
    broker: str  # "ours" | "stock"
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out_dir = self.workdir / "runs"
        self.out_dir.mkdir(exist_ok=True)
        (self.workdir / "harnessapp.py").write_text(APP_MODULE)
        env = airflow_env(self.workdir / "airflow-home", self.url, self.broker, self.out_dir)
        env["PYTHONPATH"] = os.pathsep.join([str(self.workdir), os.environ.get("PYTHONPATH", "")])
        self.env = env

    def add(self, name: str, queues, pool: str = "solo", concurrency: int = 1) -> Worker:
        # as `airflow celery worker` runs it (-O fair, mingle/gossip/heartbeat left on), with its pool
        argv = [
            sys.executable, "-m", "celery", "-A", "harnessapp", "worker", "-O", "fair", "-Q", ",".join(queues),
            "-P", pool, "-c", str(concurrency), "-n", f"{name}@localhost", "-l", "INFO",
        ]  # fmt: skip
        worker = Worker(name, argv, self.env, self.workdir).start()
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout: float = 120) -> None:
        wait_until(lambda: all(w.ready() for w in self.workers), timeout, f"{len(self.workers)} workers ready", 0.2)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()

    def runs(self) -> list[tuple[str, float, float]]:
        """(task id, publish time, start time) of every run, from every process's file."""
        out = []
        for path in self.out_dir.glob("runs-*.log"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    out.append((parts[0], float(parts[1]), float(parts[2])))
        return out

    def count_runs(self) -> int:
        return sum(p.read_bytes().count(b"\n") for p in self.out_dir.glob("runs-*.log"))

    def clear_runs(self) -> None:
        for path in self.out_dir.glob("runs-*.log"):
            path.unlink()


def pct(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def wait_count(workers: WorkerSet, n: int, timeout: float, what: str) -> None:
    def exited() -> str | None:
        for w in workers.workers:
            if w.proc.poll() is not None:
                return f"worker {w.name} exited {w.proc.returncode}:\n{w.log()[-3000:]}"
        return None

    wait_until(lambda: workers.count_runs() >= n, timeout, what, interval=0.05, abort=exited,
               explain=lambda: f"{workers.count_runs()}/{n} ran")  # fmt: skip
