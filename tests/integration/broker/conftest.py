"""Helpers for the broker integration tests: a throw-away Celery app module and worker processes.

Workers are real ``celery worker`` subprocesses (own process group), so ``kill -9`` is real. Tasks write
one JSON line per start/finish to a file; tests read it to see which task ids ran, where and how often.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.servers.redis_cluster import RedisCluster
from tests.harness.waiting import WaitTimeout, wait_until

pytestmark = pytest.mark.integration

APP_MODULE = """
import json, os, time
import airflow_ha.broker  # registers the rediscluster:// transport alias
from celery import Celery

app = Celery("brokerapp", broker=os.environ["BROKER_TEST_URL"])
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("BROKER_TEST_PREFETCH", "1")),
    broker_transport_options=json.loads(os.environ.get("BROKER_TEST_TRANSPORT_OPTIONS", "{}")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="default",
)
OUT = os.environ["BROKER_TEST_OUT"]


def _record(kind, request, **fields):
    line = {"kind": kind, "id": request.id, "pid": os.getpid(), "t": time.time(),
            "queue": (request.delivery_info or {}).get("routing_key"), **fields}
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\\n").encode())
    finally:
        os.close(fd)


@app.task(bind=True)
def record(self, label=None, sleep_once=0.0, sent=None):
    _record("start", self.request, label=label, sent=sent)
    if sleep_once:
        marker = OUT + "." + self.request.id + ".slept"
        if not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(sleep_once)
    _record("done", self.request, label=label, sent=sent)
"""


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def exited(self) -> str | None:
        return None if self.proc.poll() is None else f"worker {self.name} exited {self.proc.returncode}"

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(
            lambda: " ready." in self.log(),
            timeout,
            f"worker {self.name} to be ready",
            abort=self.exited,
            explain=lambda: self.log()[-4000:],
        )

    def kill9(self) -> None:
        """SIGKILL the worker and its pool children (the whole process group), as a lost pod."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()


@dataclass
class CeleryHarness:
    """One app module + result file in a tmp dir; starts workers and a client app on ``url``."""

    tmp: Path
    url: str
    transport_options: dict = field(default_factory=dict)
    prefetch: int = 1
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        (self.tmp / "brokerapp.py").write_text(APP_MODULE)
        self.out = self.tmp / "events.jsonl"
        self.out.touch()

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BROKER_TEST_URL=self.url,
            BROKER_TEST_OUT=str(self.out),
            BROKER_TEST_PREFETCH=str(self.prefetch),
            BROKER_TEST_TRANSPORT_OPTIONS=json.dumps(self.transport_options),
            PYTHONPATH=os.pathsep.join([str(self.tmp), env.get("PYTHONPATH", "")]),
        )
        return env

    def start_worker(self, queues, concurrency: int = 2, name: str | None = None, wait: bool = True) -> Worker:
        name = name or f"w{len(self.workers)}-{secrets.token_hex(3)}"
        log_path = self.tmp / f"{name}.log"
        argv = [
            sys.executable, "-m", "celery", "-A", "brokerapp", "worker", "-Q", ",".join(queues),
            "-c", str(concurrency), "-P", "prefork", "-n", f"{name}@localhost", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv, cwd=self.tmp, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        worker = Worker(name, proc, log_path)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def client(self):
        from celery import Celery

        from airflow_ha.broker import register

        register()  # as the app module does: the URL's scheme must resolve in this process too

        app = Celery("client", broker=self.url, set_as_current=False)
        app.conf.update(
            broker_transport_options=self.transport_options, task_ignore_result=True, task_default_queue="default"
        )
        return app

    def events(self) -> list[dict]:
        lines = self.out.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def done_counts(self) -> Counter:
        return Counter(e["id"] for e in self.events() if e["kind"] == "done")

    def wait_done(self, ids, timeout: float = 120) -> Counter:
        ids = set(ids)

        def missing() -> str:
            gone = ids - set(self.done_counts())
            logs = "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in self.workers)
            return f"{len(gone)} of {len(ids)} tasks never completed, e.g. {sorted(gone)[:5]}\n{logs}"

        def all_done() -> Counter | None:
            counts = self.done_counts()
            return counts if ids <= set(counts) else None

        if not ids:
            return self.done_counts()

        return wait_until(
            all_done,
            timeout,
            f"{len(ids)} tasks to complete",
            interval=0.25,
            explain=missing,
        )

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@pytest.fixture
def harness(tmp_path, redis_cluster):
    h = CeleryHarness(tmp_path / "celery", redis_cluster.url())
    yield h
    h.stop()


@pytest.fixture
def own_cluster(tmp_path):
    """A private 3+3 cluster for destructive tests (failover, DELSLOTS)."""
    cluster = RedisCluster(base_dir=tmp_path / "own-cluster", password=secrets.token_hex(12))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def wait_replicas_in_sync(cluster: RedisCluster, timeout: float = 60) -> None:
    """Every replica finished its initial sync (WAIT can only succeed then)."""

    def in_sync() -> bool:
        replicas = cluster.replica_nodes()
        return (
            bool(replicas)
            and all(r.info("replication").get("master_link_status") == "up" for r in replicas)
            and all(
                all(v.get("state") == "online" for k, v in m.info("replication").items() if k.startswith("slave"))
                for m in cluster.master_nodes()
            )
        )

    wait_until(in_sync, timeout, "every replica to finish its initial sync")


def drain_until(conn, done, timeout: float) -> None:
    """Pump ``conn``'s events (its consumers' callbacks run) until ``done()`` or ``timeout`` passes; the
    test then asserts what arrived (less than expected is a finding, not a harness error)."""

    def pumped() -> bool:
        with contextlib.suppress(TimeoutError):
            conn.drain_events(timeout=0.5)
        return done()

    with contextlib.suppress(WaitTimeout):
        if not done():
            wait_until(pumped, timeout, "messages", interval=0)


def drain(conn, got: list, n: int, timeout: float = 20.0) -> None:
    """:func:`drain_until` ``got`` (appended to by the consumers' callbacks) holds ``n`` items."""
    drain_until(conn, lambda: len(got) >= n, timeout)
