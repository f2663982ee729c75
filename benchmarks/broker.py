"""Celery publish+consume throughput and latency: ``rediscluster://`` (3 masters) vs stock ``redis://``.

Every variant runs in this process's run on servers started here (127.0.0.1): one plain redis-server
for kombu's stock redis transport, one 3-master + 3-replica Redis Cluster for this transport. Each
variant: one prefork ``celery worker`` subprocess (``--concurrency``), ``--tasks`` no-op tasks published
from this process as fast as possible, then consumed. Reported:

* publish rate (tasks/s as the client sees ``send_task`` return),
* end-to-end throughput (tasks / (last task finished - first publish)),
* latency p50/p99 (task start - publish time; includes queueing behind earlier tasks),

and the ratio of each cluster variant to stock redis://. No assertion: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

import airflow_ha.broker
from airflow_ha.broker import keys
from airflow_ha.local.process import free_port, wait_until
from airflow_ha.local.redis_cluster import RedisCluster

APP = """
import json, os, time
import airflow_ha.broker
from celery import Celery
app = Celery("benchapp", broker=os.environ["BENCH_URL"])
app.conf.update(task_acks_late=True, task_ignore_result=True, worker_prefetch_multiplier=4,
                broker_transport_options=json.loads(os.environ["BENCH_OPTS"]), worker_hijack_root_logger=False)
OUT = os.environ["BENCH_OUT"]

@app.task(bind=True)
def noop(self, sent):
    start = time.time()
    fd = os.open(OUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (json.dumps([self.request.id, sent, start, time.time()]) + "\\n").encode())
    os.close(fd)
"""

# the cluster queues: one per master for the spread variant (checked against the live slot map)
SPREAD_QUEUES = ("q-alpha", "default", "q-charlie")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_variant(label, url, queues, opts, tasks, concurrency, workdir: Path) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "benchapp.py").write_text(APP)
    out = workdir / "out.jsonl"
    out.write_text("")
    env = {
        **os.environ,
        "BENCH_URL": url,
        "BENCH_OPTS": json.dumps(opts),
        "BENCH_OUT": str(out),
        "PYTHONPATH": os.pathsep.join([str(workdir), os.environ.get("PYTHONPATH", "")]),
    }
    log = (workdir / "worker.log").open("ab")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchapp", "worker", "-Q", ",".join(queues), "-c", str(concurrency),
         "-P", "prefork", "-l", "INFO", "-n", f"bench-{secrets.token_hex(3)}@localhost",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: b" ready." in (workdir / "worker.log").read_bytes(), 60, f"{label} worker ready")
        from celery import Celery

        app = Celery("benchclient", broker=url, set_as_current=False)
        app.conf.update(broker_transport_options=opts, task_ignore_result=True)
        # warm-up: connections, script cache, subscriptions
        with app.producer_or_acquire() as producer:
            for q in queues:
                app.send_task("benchapp.noop", args=[time.time()], queue=q, producer=producer)
        wait_until(lambda: len(out.read_text().splitlines()) >= len(queues), 60, "warm-up tasks")
        out.write_text("")
        first = time.time()
        with app.producer_or_acquire() as producer:
            for i in range(tasks):
                app.send_task("benchapp.noop", args=[time.time()], queue=queues[i % len(queues)], producer=producer)
        published = time.time()
        wait_until(lambda: len(out.read_text().splitlines()) >= tasks, 600, f"{label}: {tasks} tasks done", 0.2)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        last = max(r[3] for r in rows)
        latencies = [(r[2] - r[1]) * 1000 for r in rows]
        return {
            "variant": label,
            "publish_rate": tasks / (published - first),
            "throughput": tasks / (last - first),
            "p50_ms": statistics.median(latencies),
            "p99_ms": pct(latencies, 0.99),
        }
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks broker")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    args, _ = parser.parse_known_args(argv)
    airflow_ha.broker.register()
    base = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    password = secrets.token_hex(8)
    port = free_port()
    plain = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--requirepass", password, "--dir", str(base)],
        stdout=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    cluster = RedisCluster(base_dir=base / "cluster", password=password)
    results = []
    try:
        wait_until(lambda: _pings(port, password), 15, "plain redis-server")
        cluster.start()
        _wait_in_sync(cluster)
        masters = {cluster.master_for_slot(keys.queue_slot(q)).port for q in SPREAD_QUEUES}
        assert len(masters) == 3, "SPREAD_QUEUES must map to three different masters"
        stock = f"redis://:{password}@127.0.0.1:{port}/0"
        variants = [
            ("redis:// 1 node, 1 queue", stock, ("bench",), {}),
            ("redis:// 1 node, 3 queues", stock, SPREAD_QUEUES, {}),
            ("rediscluster 1 queue, WAIT 1", cluster.url(), ("bench",), {}),
            ("rediscluster 1 queue, no WAIT", cluster.url(), ("bench",), {"replication_wait_replicas": 0}),
            ("rediscluster 3 queues/3 masters, WAIT 1", cluster.url(), SPREAD_QUEUES, {}),
            ("rediscluster 3 queues/3 masters, no WAIT", cluster.url(), SPREAD_QUEUES,
             {"replication_wait_replicas": 0}),
        ]  # fmt: skip
        for i, (label, url, queues, opts) in enumerate(variants):
            print(f"running: {label} ...", flush=True)
            results.append(run_variant(label, url, queues, opts, args.tasks, args.concurrency, base / f"v{i}"))
    finally:
        cluster.stop()
        plain.terminate()
        plain.wait(15)
    stock1, stock3 = results[0], results[1]
    print(f"\nCelery {args.tasks} no-op tasks, prefork -c {args.concurrency}, prefetch x4, acks_late; this machine")
    header = f"{'variant':44} {'publish/s':>10} {'tasks/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'x stock':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        ref = stock3 if "3 queues" in r["variant"] else stock1
        ratio = r["throughput"] / ref["throughput"]
        print(f"{r['variant']:44} {r['publish_rate']:10.0f} {r['throughput']:9.0f} {r['p50_ms']:9.1f} "
              f"{r['p99_ms']:9.1f} {ratio:8.2f}")  # fmt: skip
    print("x stock = end-to-end tasks/s divided by stock redis:// with the same queues (same run)")
    return 0


def _pings(port, password):
    try:
        return redis.Redis(port=port, password=password, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def _wait_in_sync(cluster: RedisCluster, timeout=60):
    def ok():
        return all(r.info("replication").get("master_link_status") == "up" for r in cluster.replica_nodes()) and all(
            all(v.get("state") == "online" for k, v in m.info("replication").items() if k.startswith("slave"))
            for m in cluster.master_nodes()
        )

    wait_until(ok, timeout, "replicas in sync", 0.2)


if __name__ == "__main__":
    sys.exit(main())
