"""Does the broker scale with workers? ``rediscluster://`` (product defaults) vs stock ``redis://``.

``python -m benchmarks broker_scaling [--quick] [--tasks=N] [--workers=1,4,8] [--queues=1,6] [--brokers=ours]``
(``python -m benchmarks`` passes only arguments that start with ``-`` on: write values with ``=``).

Both brokers run in the same run on the same cores (servers started here on 127.0.0.1):

* ours: a 6-node Redis Cluster (3 masters + 3 replicas, ``RedisCluster``: AOF with ``appendfsync always``, as
  the chart's Redis runs) with the Celery config Airflow builds from ``[celery] celery_config_options =
  airflow_ha.broker.celery_config.CELERY_CONFIG`` - the product's defaults, nothing hand-set;
* ours-nowait: the same cluster with ``?replication_wait_replicas=0`` in the broker URL (how the chart passes
  ``broker.transportOptions``): no WAIT after a publish; the difference to ``ours`` is what the replication
  wait costs on this machine;
* ours-everysec: no WAIT, and every node set to ``appendfsync everysec`` for the row (``CONFIG SET``, set back
  to ``always`` after it): the durability stock has, so against stock this row is the transport's own cost,
  and the difference to ``ours-nowait`` what fsyncing every write costs;
* stock: one ``redis-server`` (AOF, ``appendfsync everysec``: what a user configures for Celery) with Airflow's
  own ``DEFAULT_CELERY_CONFIG``.

Workers: N separate ``celery worker -P solo -O fair`` processes (one consumer connection and one task slot
each, so N is the number of consumers a publish may wake; prefetch 1, acks_late, as Airflow sets),
consuming one queue (``default``) or 6 queues (tasks spread round-robin). Per row:

* tasks/s: a burst of ``--tasks`` no-op tasks published by one producer in this process as fast as it can
  while the workers consume: tasks / (last task start - first publish); publish/s shows when the
  producer is the bound;
* latency p50/p99: publish -> task start of ``--paced`` tasks published at ``--rate``/s (idle consumers
  woken per message: the wake-up path, not queueing);
* Redis commands per task: the sum over every node of ``INFO commandstats`` deltas across the burst,
  divided by the tasks (includes the workers' idle traffic in that window, and for the cluster what the
  replicas apply);
* CPU ms per task over the burst, by part (/proc): the publisher (this process), the workers, the Redis
  masters and the replicas (stock: its one server); where ours spends more than stock, and on what;
* ours/stock ratio of tasks/s and of commands per task.

No assertion: the numbers are this machine's.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from benchmarks._celery import (
    TASK,
    PlainRedis,
    WorkerSet,
    client_app,
    commandstats,
    live_clients,
    pct,
    redis_server,
    redis_version,
    wait_count,
    wait_in_sync,
)
from benchmarks._cpu import cpu_seconds_by_part, own_cpu_seconds

QUEUE_SETS = {1: ("default",), 6: ("default", "q1", "q2", "q3", "q4", "q5")}


def cpu_by_part(workers: WorkerSet, redis_parts: dict[str, set[int]]) -> dict[str, float]:
    """CPU seconds so far of the publisher (this process), the workers and each Redis part."""
    groups = {"workers": {w.proc.pid for w in workers.workers}, **redis_parts}
    return {"publisher": own_cpu_seconds(), **cpu_seconds_by_part(groups)}


def run_case(broker, url, clients_fn, parts_fn, n_workers, queues, args, workdir: Path) -> dict:
    workers = WorkerSet(workdir, url, broker)
    app = None
    try:
        for i in range(n_workers):
            workers.add(f"w{i}", queues)
        workers.wait_ready()
        app = client_app(url, broker)
        with app.producer_or_acquire() as producer:
            # warm-up: every worker's connections, scripts and subscriptions in use
            warm = 2 * n_workers * len(queues)
            for i in range(warm):
                app.send_task(TASK, args=[time.time()], queue=queues[i % len(queues)], producer=producer)
            wait_count(workers, warm, 120, "warm-up")
            time.sleep(0.5)
            workers.clear_runs()

            clients = clients_fn()
            replica = [c.info("replication").get("role") == "slave" for c in clients]
            before = [commandstats([c]) for c in clients]
            redis_parts = parts_fn()
            cpu_before = cpu_by_part(workers, redis_parts)
            first = time.time()
            for i in range(args.tasks):
                app.send_task(TASK, args=[time.time()], queue=queues[i % len(queues)], producer=producer)
            published = time.time()
            wait_count(workers, args.tasks, 600, f"{args.tasks} burst tasks")
            cpu_after = cpu_by_part(workers, redis_parts)
            after = [commandstats([c]) for c in clients]
            burst = workers.runs()
            workers.clear_runs()

            interval = 1.0 / args.rate
            next_at = time.monotonic()
            for i in range(args.paced):
                next_at += interval
                app.send_task(TASK, args=[time.time()], queue=queues[i % len(queues)], producer=producer)
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            wait_count(workers, args.paced, 120, f"{args.paced} paced tasks")
            paced = workers.runs()
        last = max(r[2] for r in burst)
        latencies = [(r[2] - r[1]) * 1000 for r in paced]
        deltas = [a - b for a, b in zip(after, before, strict=True)]
        delta = sum(deltas, Counter())
        on_replicas = sum((d for d, r in zip(deltas, replica, strict=True) if r), Counter())
        return {
            "publish_rate": args.tasks / (published - first),
            "throughput": args.tasks / (last - first),
            "p50_ms": statistics.median(latencies),
            "p99_ms": pct(latencies, 0.99),
            "burst_p50_ms": statistics.median((r[2] - r[1]) * 1000 for r in burst),
            "cmds_per_task": sum(delta.values()) / args.tasks,
            "top": [(name, calls / args.tasks) for name, calls in delta.most_common(5)],
            "all": [(name, calls / args.tasks) for name, calls in delta.most_common()],
            "replica_cmds_per_task": sum(on_replicas.values()) / args.tasks,
            "cpu_ms_per_task": {k: (cpu_after[k] - cpu_before[k]) * 1000 / args.tasks for k in cpu_before},
            "runs": len(burst),
        }
    finally:
        if app is not None:
            app.close()
        workers.stop()


def set_appendfsync(cluster, policy: str) -> None:
    """``CONFIG SET appendfsync`` on every node of the cluster (the harness starts them with ``always``)."""
    for node in cluster.nodes:
        with node.client(socket_timeout=3) as conn:
            conn.config_set("appendfsync", policy)


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks broker_scaling")
    parser.add_argument("--quick", action="store_true", help="one small case: 2 workers, 1 queue, 300 tasks")
    parser.add_argument("--tasks", type=int, default=2000, help="burst tasks per row (default 2000)")
    parser.add_argument("--paced", type=int, default=200, help="paced tasks per row for the latency")
    parser.add_argument("--rate", type=float, default=100.0, help="paced publish rate, tasks/s")
    parser.add_argument("--workers", default="1,4,8", help="worker process counts")
    parser.add_argument("--queues", default="1,6", help="queue counts (1 and/or 6)")
    parser.add_argument("--brokers", default="ours,ours-nowait,ours-everysec,stock")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--all-commands", action="store_true", help="print every command per task, not the top 5")
    args, _ = parser.parse_known_args(argv)
    if args.quick:
        args.tasks, args.paced, args.workers, args.queues = min(args.tasks, 300), min(args.paced, 50), "2", "1"
    args.worker_counts = [int(x) for x in args.workers.split(",")]
    args.queue_counts = [int(x) for x in args.queues.split(",")]
    args.broker_list = [b.strip() for b in args.brokers.split(",")]
    return args


def main(argv=None) -> int:
    args = parse(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    password = secrets.token_hex(8)
    plain = cluster = None
    results: dict[tuple[int, int, str], dict] = {}
    started = time.monotonic()
    rows = len(args.worker_counts) * len(args.queue_counts) * len(args.broker_list)
    print(
        f"{rows} runs: {args.tasks} burst + {args.paced} paced ({args.rate:.0f}/s) no-op tasks each; sized to"
        " finish in ~10 min on 2 shared cores (each run also starts and stops its workers)",
        flush=True,
    )
    try:
        from tests.harness.servers.redis_cluster import RedisCluster

        if "stock" in args.broker_list:
            plain = PlainRedis(base / "plain", password).start()
        if any(b.startswith("ours") for b in args.broker_list):
            cluster = RedisCluster(base_dir=base / "cluster", password=password)
            cluster.start()
            wait_in_sync(cluster)
        for nq in args.queue_counts:
            for nw in args.worker_counts:
                for broker in args.broker_list:
                    if broker == "ours":
                        url, clients = cluster.url(), lambda: live_clients(cluster, None)
                    elif broker in ("ours-nowait", "ours-everysec"):
                        url = cluster.url() + "?replication_wait_replicas=0"
                        clients = lambda: live_clients(cluster, None)  # noqa: E731
                    else:
                        url, clients = plain.url(), lambda: live_clients(None, plain)
                    if broker == "stock":
                        parts = lambda: {"redis masters": {plain.proc.pid}, "redis replicas": set()}  # noqa: E731
                    else:
                        parts = lambda: {  # noqa: E731
                            "redis masters": {n.proc.pid for n in cluster.master_nodes()},
                            "redis replicas": {n.proc.pid for n in cluster.replica_nodes()},
                        }
                    label = f"{broker} {nw} workers {nq} queue(s)"
                    print(f"running: {label} ...", flush=True)
                    t0 = time.monotonic()
                    if broker == "ours-everysec":
                        set_appendfsync(cluster, "everysec")
                    try:
                        results[nw, nq, broker] = run_case(
                            broker, url, clients, parts, nw, QUEUE_SETS[nq], args, base / f"{broker}-w{nw}-q{nq}"
                        )
                    finally:
                        if broker == "ours-everysec":
                            set_appendfsync(cluster, "always")
                    print(f"  done in {time.monotonic() - t0:.0f}s", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        if plain is not None:
            plain.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    report(args, results, plain, time.monotonic() - started)
    return 0


def _rows(args, results):
    """(workers, queues, broker, result, stock's result in the same case or None for stock itself), in order."""
    for nq in args.queue_counts:
        for nw in args.worker_counts:
            for broker in args.broker_list:
                r = results.get((nw, nq, broker))
                if r is not None:
                    yield nw, nq, broker, r, results.get((nw, nq, "stock")) if broker != "stock" else None


def report(args, results, plain, elapsed) -> None:
    print()
    print(
        f"Celery, N x `celery worker -P solo -O fair` (prefetch 1, acks_late: Airflow's config); "
        f"{args.tasks} burst tasks/row, latency from {args.paced} tasks at {args.rate:.0f}/s; {elapsed:.0f}s total"
    )
    print(
        "ours = rediscluster:// on 3 masters + 3 replicas, appendfsync always (the chart's), product defaults "
        "(celery_config.CELERY_CONFIG); -nowait: no WAIT; -everysec: no WAIT and appendfsync everysec (stock's)"
    )
    print(f"stock = redis:// on one redis-server ({plain.persistence if plain else 'n/a'}), Airflow's defaults")
    print(f"Redis {redis_version(redis_server())} for both; 2-core machine shared by servers, workers and publisher")
    header = (
        f"{'workers':>7} {'queues':>6} {'broker':13} {'tasks/s':>8} {'publish/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'burst p50':>9} {'cmds/task':>9} {'x stock tasks/s':>15} {'x stock cmds':>12}"
    )
    print(header)
    print("-" * len(header))
    for nw, nq, broker, r, stock in _rows(args, results):
        ratio = cmds = ""
        if stock:
            ratio = f"{r['throughput'] / stock['throughput']:.2f}"
            cmds = f"{r['cmds_per_task'] / stock['cmds_per_task']:.2f}"
        print(
            f"{nw:7d} {nq:6d} {broker:13} {r['throughput']:8.0f} {r['publish_rate']:9.0f} "
            f"{r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['burst_p50_ms']:9.0f} {r['cmds_per_task']:9.1f} "
            f"{ratio:>15} {cmds:>12}"
        )
    print("p50/p99: publish -> start of paced tasks; burst p50: the same in the burst (queueing included)")
    print()
    print("CPU ms per task over the burst, by part (/proc; x stock: all parts against stock's all):")
    names = ("publisher", "workers", "redis masters", "redis replicas")
    header = (
        f"{'workers':>7} {'queues':>6} {'broker':13} "
        + " ".join(f"{n:>14}" for n in names)
        + f" {'all':>7} {'x stock':>7}"
    )
    print(header)
    print("-" * len(header))
    for nw, nq, broker, r, stock in _rows(args, results):
        cpu = r["cpu_ms_per_task"]
        total = sum(cpu.values())
        ratio = f"{total / sum(stock['cpu_ms_per_task'].values()):.2f}" if stock else ""
        cells = " ".join(f"{cpu.get(n, 0.0):14.2f}" for n in names)
        print(f"{nw:7d} {nq:6d} {broker:13} {cells} {total:7.2f} {ratio:>7}")
    print()
    print("cmds/task: all nodes' INFO commandstats delta over the burst / tasks; top commands per task:")
    for nw, nq, broker, r, _stock in _rows(args, results):
        rows = r["all"] if args.all_commands else r["top"]
        top = ", ".join(f"{name} {per:.2f}" for name, per in rows if per >= 0.005)
        replicas = ""
        if args.all_commands:
            replicas = f" (of which replicas applying writes: {r['replica_cmds_per_task']:.1f})"
        print(f"  {broker:13} {nw}w {nq}q: {top}{replicas}")


if __name__ == "__main__":
    sys.exit(main())
