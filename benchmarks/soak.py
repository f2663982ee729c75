"""Soak under kills: does an acknowledged task always run, and does the worker survive? ``tox -e soak``.

``python -m benchmarks.soak [--tasks 20000] [--minutes 5] [--brokers ours,stock]`` (quick:
``--tasks 2000 --minutes 1``). Everything runs on 127.0.0.1 free ports under a temp dir, and every process
started here is stopped by its PID (its process group for workers), also on Ctrl-C or an exception.

Per broker:

* ours: a 6-node Redis Cluster (``RedisCluster``: 3 masters + 3 replicas, the product's node config) and
  the Celery config Airflow builds with ``celery_config_options = airflow_ha.broker.celery_config.CELERY_CONFIG``
  (the product's transport defaults). Chaos: every ``--kill-every`` s a master is SIGKILLed and restarted
  ``--restart-after`` s later; every ``--freeze-every`` s (first at ``--freeze-first``, so the two never
  start together) another master is SIGSTOPped for ``--freeze-for`` s (longer than cluster-node-timeout:
  its replica is promoted) and then SIGCONTed.
* stock: one ``redis-server`` as a user configures it for Celery (appendonly yes, appendfsync everysec)
  with Airflow's own ``DEFAULT_CELERY_CONFIG``; the same kills (SIGKILL, restart 5 s later), no freezes.

Workers: ``--workers`` ``celery worker -P prefork -c --concurrency -O fair`` processes (as ``airflow celery
worker`` runs them), restarted by this harness if one exits (counted, as Kubernetes would restart a pod).
The publisher sends ``--tasks`` tasks at a steady rate over ``--minutes`` with ids ``soak-NNNNNN`` spread
over ``--queues`` queues; ``send_task`` returning is the broker's acknowledgement; a publish that raised
(after Celery's own publish retry) is counted as a refusal and published again with the same id. Each
task appends its id to a per-process file the moment it starts. After publishing stops, the chaos is
undone and the queues drain (until every acknowledged id ran, or no progress for ``--drain-idle`` s).

Printed per broker: completed, lost (acknowledged, never ran), duplicated (ran more than once; how many of
those had a refused publish that was sent again), refused publishes, worker exits, consumer reconnects
seen in the worker logs, and publish-time figures. Exit status is non-zero only if the harness broke;
no figure is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.waiting import WaitTimeout, wait_until

from benchmarks._celery import TASK, PlainRedis, WorkerSet, client_app, redis_server, redis_version, roles, thaw_all


# -- accounting (pure; tests/unit/test_soak_accounting.py) ---------------------------------------------------
@dataclass(frozen=True)
class Tally:
    acknowledged: int
    completed: int  # acknowledged ids that ran at least once
    lost: int  # acknowledged ids that never ran
    duplicated: int  # ids that ran more than once
    extra_runs: int  # runs beyond the first, summed
    duplicated_after_refusal: int  # duplicated ids whose publish was refused at least once (sent again)
    unacknowledged_runs: int  # ids that ran but whose publish was never acknowledged
    lost_ids: tuple[str, ...] = ()
    duplicated_ids: tuple[str, ...] = ()


def account(acknowledged: Iterable[str], refused: Iterable[str], runs: Iterable[str]) -> Tally:
    """Tally the soak: ``acknowledged`` ids the broker took, ``refused`` ids with a refused publish attempt,
    ``runs`` one entry per execution of an id (an id appears once per time it ran)."""
    acked = set(acknowledged)
    refused_ids = set(refused)
    counts = Counter(runs)
    ran = set(counts)
    lost = sorted(acked - ran)
    dups = sorted(i for i, n in counts.items() if n > 1)
    return Tally(
        acknowledged=len(acked),
        completed=len(acked & ran),
        lost=len(lost),
        duplicated=len(dups),
        extra_runs=sum(counts[i] - 1 for i in dups),
        duplicated_after_refusal=sum(1 for i in dups if i in refused_ids),
        unacknowledged_runs=len(ran - acked),
        lost_ids=tuple(lost),
        duplicated_ids=tuple(dups),
    )


# -- the run -----------------------------------------------------------------------------------------------
@dataclass
class Chaos:
    """Kills (and for the cluster, freezes) on a schedule, in a thread; undoes everything when stopped."""

    args: argparse.Namespace
    cluster: object = None  # RedisCluster
    plain: PlainRedis | None = None
    log: list[str] = field(default_factory=list)
    kills: int = 0
    freezes: int = 0
    skipped: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def note(self, t0: float, text: str) -> None:
        self.log.append(f"t={time.monotonic() - t0:6.1f}s {text}")

    def schedule(self, duration: float) -> list[tuple[float, str]]:
        a = self.args
        events = []
        t = a.kill_every
        while t < duration:
            events += [(t, "kill"), (t + a.restart_after, "restart")]
            t += a.kill_every
        if self.cluster is not None and a.freeze_every > 0:
            t = a.freeze_first
            while t < duration:
                events += [(t, "freeze"), (t + a.freeze_for, "thaw")]
                t += a.freeze_every
        return sorted(events)

    def run(self, t0: float, duration: float) -> None:
        killed = frozen = None
        rotation = 0
        try:
            for at, action in self.schedule(duration):
                while not self.stop_event.is_set() and time.monotonic() - t0 < at:
                    time.sleep(0.05)
                if self.stop_event.is_set() and action in ("kill", "freeze"):
                    continue
                if self.plain is not None:
                    if action == "kill":
                        self.plain.kill()
                        self.kills += 1
                        self.note(t0, f"SIGKILL redis-server :{self.plain.port}")
                    elif action == "restart":
                        self.plain.start()
                        self.note(t0, "redis-server restarted")
                    continue
                cluster = self.cluster
                if action in ("kill", "freeze"):
                    skip = tuple(n for n in (killed, frozen) if n is not None)
                    masters = sorted(p for p, r in roles(cluster, skip).items() if r == "master")
                    if not masters:
                        self.skipped += 1
                        self.note(t0, f"{action}: no master answering, skipped")
                        continue
                    node = cluster.node_by_port(masters[rotation % len(masters)])
                    rotation += 1
                    if action == "kill":
                        cluster.kill(node)
                        killed = node
                        self.kills += 1
                        self.note(t0, f"SIGKILL master :{node.port}")
                    else:
                        os.kill(node.proc.pid, signal.SIGSTOP)
                        frozen = node
                        self.freezes += 1
                        self.note(t0, f"SIGSTOP master :{node.port} for {self.args.freeze_for:.0f}s")
                elif action == "restart" and killed is not None:
                    cluster.restart(killed)
                    self.note(t0, f"restarted :{killed.port}")
                    killed = None
                elif action == "thaw" and frozen is not None:
                    os.kill(frozen.proc.pid, signal.SIGCONT)
                    self.note(t0, f"SIGCONT :{frozen.port}")
                    frozen = None
        except BaseException as exc:  # reported by the main thread: the harness broke
            self.error = exc
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                if self.cluster is not None:
                    thaw_all(self.cluster)
                    if killed is not None and not killed.running:
                        self.cluster.restart(killed)
                elif self.plain is not None and (self.plain.proc is None or self.plain.proc.poll() is not None):
                    self.plain.start()


class Supervisor(threading.Thread):
    """Restarts a worker process that exited (as Kubernetes restarts a pod) and counts the exits."""

    def __init__(self, workers: WorkerSet):
        super().__init__(daemon=True)
        self.workers = workers
        self.exits: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            for w in self.workers.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    self.exits.append(f"{w.name} exit {w.proc.returncode}")
                    w.start()


RECONNECT = re.compile(r"Connection to broker lost|consumer: Cannot connect")


def soak_one(broker: str, args, base: Path, password: str) -> str:
    from tests.harness.servers.redis_cluster import RedisCluster

    plain = cluster = workers = supervisor = chaos = thread = None
    queues = ["default"] + [f"q{i}" for i in range(1, args.queues)]
    try:
        if broker == "ours":
            cluster = RedisCluster(base_dir=base / "cluster", password=password)
            cluster.start()
            url = cluster.url()
        else:
            plain = PlainRedis(base / "plain", password).start()
            url = plain.url()
        workers = WorkerSet(base / "celery", url, broker)
        for i in range(args.workers):
            workers.add(f"w{i}", queues, pool="prefork", concurrency=args.concurrency)
        workers.wait_ready()
        supervisor = Supervisor(workers)
        supervisor.start()
        app = client_app(url, broker)

        duration = args.minutes * 60.0
        interval = duration / args.tasks
        chaos = Chaos(args, cluster=cluster, plain=plain)
        t0 = time.monotonic()
        thread = threading.Thread(target=chaos.run, args=(t0, duration), daemon=True)
        thread.start()
        acked: list[str] = []
        refused_ids: set[str] = set()
        refusals = 0
        errors: Counter = Counter()
        publish_times: list[float] = []
        abandoned = 0
        progress_at = t0
        for i in range(args.tasks):
            task_id = f"soak-{i:06d}"
            delay = t0 + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            first_try = time.monotonic()
            while True:
                started = time.monotonic()
                try:
                    app.send_task(TASK, args=[time.time()], queue=queues[i % len(queues)], task_id=task_id)
                except Exception as exc:
                    refusals += 1
                    refused_ids.add(task_id)
                    errors[f"{type(exc).__name__}: {str(exc)[:90]}"] += 1
                    if time.monotonic() - first_try > args.give_up:
                        abandoned += 1
                        break
                    time.sleep(0.5)
                    continue
                publish_times.append(time.monotonic() - started)
                acked.append(task_id)
                break
            if time.monotonic() - progress_at >= 30:
                progress_at = time.monotonic()
                print(
                    f"  [{broker}] t={progress_at - t0:4.0f}s published {i + 1}/{args.tasks}, ran "
                    f"{workers.count_runs()}, refusals {refusals}, worker exits {len(supervisor.exits)}",
                    flush=True,
                )
        publish_done = time.monotonic() - t0
        chaos.stop_event.set()
        thread.join()
        if chaos.error is not None:
            raise RuntimeError("chaos thread failed") from chaos.error
        if cluster is not None:
            with contextlib.suppress(TimeoutError):
                cluster.wait_healthy(120)
        # drain
        drain_start = time.monotonic()
        acked_set = set(acked)
        progress = {"seen": -1, "at": drain_start}

        def drained_or_stalled() -> bool:  # every acknowledged task ran, or none ran for drain_idle seconds
            runs = [r[0] for r in workers.runs()]
            if acked_set <= set(runs):
                return True
            if len(runs) != progress["seen"]:
                progress.update(seen=len(runs), at=time.monotonic())
            return time.monotonic() - progress["at"] > args.drain_idle

        with contextlib.suppress(WaitTimeout):  # what never ran is counted as lost below
            wait_until(drained_or_stalled, args.drain_timeout, "the workers to drain", interval=1.0)
        drained = time.monotonic() - drain_start
        supervisor.stop_event.set()
        supervisor.join(5)
        app.close()
        workers.stop()
        tally = account(acked, refused_ids, (r[0] for r in workers.runs()))
        reconnects = sum(len(RECONNECT.findall(w.log())) for w in workers.workers)
        publish_times.sort()
        slow = sum(1 for t in publish_times if t > 1.0)
        line = (
            f"{broker:5}: published {args.tasks} in {publish_done:.0f}s, acknowledged {tally.acknowledged}"
            f" (abandoned {abandoned}); completed {tally.completed}, lost {tally.lost}, duplicated"
            f" {tally.duplicated} ({tally.duplicated_after_refusal} after a refused publish sent again),"
            f" ran unacknowledged {tally.unacknowledged_runs}; refused publishes {refusals} on {len(refused_ids)}"
            f" ids; worker exits {len(supervisor.exits)}; consumer reconnects {reconnects};"
            f" publish p50/p99/max {pct_ms(publish_times, 0.5)}/{pct_ms(publish_times, 0.99)}/"
            f"{publish_times[-1] if publish_times else 0:.1f}s ({slow} > 1 s); kills {chaos.kills},"
            f" freezes {chaos.freezes} (skipped {chaos.skipped}); drain {drained:.0f}s"
        )
        details = [f"  chaos: {e}" for e in chaos.log]
        details += [f"  refusal: {n} x {e}" for e, n in errors.most_common(5)]
        details += [f"  worker exit: {e}" for e in supervisor.exits]
        if tally.lost_ids:
            details.append(f"  lost ids (first 10): {', '.join(tally.lost_ids[:10])}")
        if tally.duplicated_ids:
            details.append(f"  duplicated ids (first 10): {', '.join(tally.duplicated_ids[:10])}")
        print(line, flush=True)
        print("\n".join(details), flush=True)
        return line
    finally:
        if chaos is not None:
            chaos.stop_event.set()
            if thread is not None:
                thread.join(30)
        if supervisor is not None:
            supervisor.stop_event.set()
        if workers is not None:
            workers.stop()
        if cluster is not None:
            thaw_all(cluster)
            cluster.stop()
        if plain is not None:
            plain.stop()


def pct_ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{values[min(len(values) - 1, int(q * len(values)))] * 1000:.0f}ms"


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=20000)
    p.add_argument("--minutes", type=float, default=5.0, help="publishing time; the rate is tasks / minutes")
    p.add_argument("--brokers", default="ours,stock")
    p.add_argument("--queues", type=int, default=3, help="tasks spread round-robin over this many queues")
    p.add_argument("--workers", type=int, default=2, help="celery worker processes")
    p.add_argument("--concurrency", type=int, default=4, help="prefork pool size per worker")
    p.add_argument("--kill-every", type=float, default=30.0)
    p.add_argument("--restart-after", type=float, default=5.0)
    p.add_argument("--freeze-every", type=float, default=45.0, help="0: no freezes")
    p.add_argument("--freeze-first", type=float, default=20.0)
    p.add_argument("--freeze-for", type=float, default=6.0, help="s; > cluster-node-timeout (2 s locally)")
    p.add_argument("--give-up", type=float, default=300.0, help="s a refused id is retried before abandoned")
    p.add_argument("--drain-idle", type=float, default=60.0, help="stop draining after this long w/o progress")
    p.add_argument("--drain-timeout", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the temp dir (worker and Redis logs)")
    return p.parse_args(argv)


def soak_main(argv=None) -> int:
    """Not named ``main``: ``python -m benchmarks`` (tox -e bench) must not run the soak."""
    args = parse(sys.argv[1:] if argv is None else argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)  # tox/CI stopping the run: clean up as on Ctrl-C
    random.seed(args.seed)
    base = Path(tempfile.mkdtemp(prefix="soak-"))
    password = secrets.token_hex(8)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    rate = args.tasks / (args.minutes * 60)
    print(
        f"soak: {args.tasks} tasks at {rate:.1f}/s over {args.minutes:g} min, {args.workers} x celery worker"
        f" -P prefork -c {args.concurrency}, {args.queues} queue(s); Redis {redis_version(redis_server())};"
        f" kill a master every {args.kill_every:g}s (restart after {args.restart_after:g}s), freeze another every"
        f" {args.freeze_every:g}s from t={args.freeze_first:g}s for {args.freeze_for:g}s; temp dir {base}",
        flush=True,
    )
    lines = []
    status = 0
    try:
        for broker in brokers:
            print(f"--- {broker} ---", flush=True)
            lines.append(soak_one(broker, args, base / broker, password))
    except KeyboardInterrupt:
        print("interrupted; everything started here was stopped", flush=True)
        status = 130
    except Exception:
        traceback.print_exc()
        status = 2
    finally:
        if not args.keep and status == 0:
            shutil.rmtree(base, ignore_errors=True)
    if lines:
        print("\nsummary (stock: one redis-server, appendonly yes + appendfsync everysec, SIGKILLed the same way)")
        for line in lines:
            print(line)
    return status


if __name__ == "__main__":
    sys.exit(soak_main())
