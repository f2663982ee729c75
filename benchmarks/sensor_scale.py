"""Smart sensors at scale: 10,000 waiting sensors on 1,000 marker files, 2 shard processes vs 2 triggerers.

``python -m benchmarks.sensor_scale [--sensors 10000] [--targets 1000] [--shards 2] [--interval 5] [--window 3]``
(quick: ``--sensors 1000 --targets 100 --interval 2 --window 2``). Both variants run in one invocation, one
after the other, each as ``--shards`` fresh subprocesses running at the same time:

* ``smart`` - the product's :class:`SmartSensorTrigger` and per-process poke hub, as in the sensor-shard pods:
  each sensor goes to the process of its shard group by the product's own :class:`ShardMap` (hashcode ->
  virtual shard -> group), with the chart's default ``sensorShards`` virtual-shard count; the status store on
  (a harness Redis Cluster of 3 masters + 3 replicas, or ``--redis-url``), enabled through
  ``AIRFLOW_HA_SENSOR_STATUS_URL`` as a shard pod's is; ``--no-status-store`` turns it off;
* ``stock`` - the same sensors as stock deferrable sensors (the standard provider's ``FileTrigger``, as
  ``benchmarks.sensors`` uses), dealt round-robin over the processes as Airflow's triggerers take whichever
  trigger comes: stand-ins for as many triggerer pods.

Targets are marker files ``<root>/<YYYYMMDD>/edw.NNNN.job`` spread over ``--days`` day directories (the layout
of ``dags/edw_sensors.py``, whose DAGs keep up to 3 runs, i.e. 3 business days, active), ``sensors / targets``
sensors on each. Per process: memory per waiting sensor (VmRSS after every trigger waits and one interval
passed, minus VmRSS before the triggers were made, over its sensors), CPU seconds per poke interval
(``time.process_time`` over ``--window`` intervals after that warm-up), pokes (target checks) and file-system
calls per interval; then the parent writes every marker (atomically: a dot-file renamed), at a steady pace over
one interval so the writes fall at every phase of the pokes, and each sensor's latency is the time its trigger
yielded its event minus the time its marker was written.

What this stands in for: the triggers run in a plain asyncio loop in a process (each with a stub task
instance), not inside Airflow's ``TriggerRunner`` with its supervisor and database, so the triggerer's own
per-trigger cost (rows, heartbeats, event handling) is counted for neither variant; a shard group's second
replica pod is not modelled. Airflow's ``[triggerer] capacity`` (read from the installed Airflow's
configuration) is printed as the number of triggerer pods the stock variant needs. Nothing is asserted; the
last lines are extrapolations from the measured rates, labelled as such.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import queue
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

from benchmarks.sensors import Counter, _drain, _in_loop

ROOT = Path(__file__).resolve().parent.parent
FIRST_DAY = date(2026, 11, 24)
# Redis commands that are not status writes: the parent's own INFO, replicas' acks, cluster clients' set-up.
NOT_STATUS = ("info", "replconf", "ping", "cluster", "client", "command", "auth", "hello", "select")


def chart_sensor_shards() -> dict:
    """The chart's default ``sensorShards`` values: count, replicasPerGroup, virtualShards."""
    import yaml

    return yaml.safe_load((ROOT / "chart" / "values.yaml").read_text())["sensorShards"]


# -- the sensors, the same in the parent and the children -----------------------------------------
@dataclass(frozen=True)
class Target:
    index: int
    path: str
    hashcode: int
    virtual_shard: int
    group: int  # the shard group (pod ordinal) its sensors defer to


def plan(args) -> list[Target]:
    """The targets, with what a smart sensor computes at defer time (``SmartSensor.execute``)."""
    from airflow_ha.sensors.hashcode import hashcode
    from airflow_ha.sensors.pokers import get_poker
    from airflow_ha.sensors.shards import ShardMap

    shard_map = ShardMap(args.shards, args.virtual_shards)
    poker = get_poker("file")
    targets = []
    for i in range(args.targets):
        day = (FIRST_DAY + timedelta(days=i % args.days)).strftime("%Y%m%d")
        target = poker.validate({"path": f"{args.marker_root}/{day}/edw.{i:04d}.job"})
        code = hashcode(poker.kind, target)
        virtual = shard_map.virtual_shard(code)
        targets.append(Target(i, target["path"], code, virtual, shard_map.pod(virtual)))
    return targets


def sensors_of(variant: str, ordinal: int, args, targets: list[Target]) -> list[tuple[int, Target]]:
    """(sensor number, its target) of the sensors process ``ordinal`` runs."""
    every = [(j, targets[j % len(targets)]) for j in range(args.sensors)]
    if variant == "smart":
        return [(j, t) for j, t in every if t.group == ordinal]
    return [(j, t) for j, t in every if j % args.shards == ordinal]


# -- measured in the child -----------------------------------------------------------------------
def rss_kb() -> int:
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def emit(phase: str, **values) -> None:
    print(json.dumps({"phase": phase, **values}), flush=True)


def child(args) -> int:
    variant, ordinal = args.child[0], int(args.child[1])
    mine = sensors_of(variant, ordinal, args, plan(args))
    from airflow.configuration import conf

    capacity = conf.getint("triggerer", "capacity")
    now = time.time()
    if variant == "smart":
        import redis.cluster  # noqa: F401  the status store's client: loaded before the baseline, as in a pod

        import airflow_ha.broker.url  # noqa: F401
        from airflow_ha.sensors import hub as hub_module
        from airflow_ha.sensors.pokers import get_poker
        from airflow_ha.sensors.triggers import SmartSensorTrigger

        poker = get_poker("file")

        def make(t: Target):
            target = {"path": t.path}  # each trigger its own kwargs, as deserialised from its row
            return SmartSensorTrigger(
                kind=poker.kind,
                target=target,
                hashcode=t.hashcode,
                virtual_shard=t.virtual_shard,
                poke_interval=args.interval,
                deadline=now + 3600,
                description=poker.describe(target),
                deferred_at=now,
            )

        def counters() -> tuple[int, int, int]:
            hubs = list(hub_module._HUBS.values())
            pokes = sum(sum(h.pokes.values()) for h in hubs)
            listings = sum(sum(h.batches.values()) for h in hubs)  # one os.listdir per batch
            return pokes, listings, sum(len(h.entries) for h in hubs)
    else:
        import airflow.providers.standard.triggers.file as stock

        globs = Counter()
        stock.glob = globs.wrap(stock.glob)
        held = len({t.index for _, t in mine})

        def make(t: Target):
            return stock.FileTrigger(filepath=t.path, poke_interval=args.interval)

        def counters() -> tuple[int, int, int]:
            return globs.n, globs.n, held  # a FileTrigger's poke is one glob call

    started = [0]
    events: dict[int, float] = {}

    async def timed(j: int, trigger) -> None:
        started[0] += 1
        await _drain(trigger)
        events[j] = time.time()

    def coroutines():
        for j, t in mine:
            trigger = make(t)
            trigger.task_instance = SimpleNamespace(  # what the triggerer sets; the smart trigger's history names it
                dag_id=f"bench_{j // 10:05d}", task_id=f"wait_edw_{t.index:04d}", run_id="bench", map_index=-1,
                try_number=1,
            )  # fmt: skip
            yield timed(j, trigger)

    rss0 = rss_kb()
    stop = threading.Event()
    _in_loop(coroutines)(stop)
    limit = time.monotonic() + 300
    while started[0] < len(mine) and time.monotonic() < limit:
        time.sleep(0.05)
    time.sleep(args.interval)  # one interval: every target poked at least once
    rss1 = rss_kb()
    emit("ready", sensors=len(mine), started=started[0], rss0_kb=rss0, rss1_kb=rss1, capacity=capacity)

    if sys.stdin.readline().strip() != "start":  # the parent is gone
        stop.set()
        return 1
    cpu0, (pokes0, calls0, _) = time.process_time(), counters()
    time.sleep(args.interval * args.window)
    cpu1, (pokes1, calls1, held) = time.process_time(), counters()
    emit(
        "measured",
        cpu_per_interval=(cpu1 - cpu0) / args.window,
        pokes_per_interval=(pokes1 - pokes0) / args.window,
        calls_per_interval=(calls1 - calls0) / args.window,
        targets_held=held,
    )

    writes_file = sys.stdin.readline().strip()  # the parent wrote every marker: their write times are here
    if not writes_file:
        stop.set()
        return 1
    limit = time.monotonic() + max(60.0, 10 * args.interval)
    while len(events) < len(mine) and time.monotonic() < limit:
        time.sleep(0.05)
    written = json.loads(Path(writes_file).read_text())
    latencies = [round(events[j] - written[t.index], 4) for j, t in mine if j in events]
    emit("done", latencies=latencies, missing=len(mine) - len(latencies))
    stop.set()
    time.sleep(0.3)  # the loop thread sees stop (it checks every 0.1 s) and ends its tasks
    return 0


# -- the parent: Redis, children, markers, table ---------------------------------------------------
class Child:
    """One child process; its stdout lines are read by a thread so every wait has a timeout."""

    def __init__(self, cmd: list[str], env: dict, err_path: Path) -> None:
        self.err_path = err_path
        with open(err_path, "w") as err:
            self.proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, phase: str, timeout: float) -> dict:
        limit = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, limit - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"no {phase!r} from child in {timeout:.0f}s:\n{self.stderr_tail()}") from None
            if line is None:
                raise RuntimeError(f"child exited before {phase!r}:\n{self.stderr_tail()}")
            if line.startswith("{"):
                message = json.loads(line)
                if message.get("phase") == phase:
                    return message

    def stderr_tail(self) -> str:
        return self.err_path.read_text()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class RedisCommands:
    """Commands the masters of the status store processed, status writes only (``INFO commandstats``)."""

    def __init__(self, url: str) -> None:
        from airflow_ha.sensors.status import client_for_url

        self.client = client_for_url(url)

    def total(self) -> int:
        if hasattr(self.client, "get_primaries"):
            infos = [self.client.info("commandstats", target_nodes=n) for n in self.client.get_primaries()]
        else:
            infos = [self.client.info("commandstats")]
        return sum(
            stats["calls"]
            for info in infos
            for name, stats in info.items()
            if name.removeprefix("cmdstat_").split("|")[0].lower() not in NOT_STATUS
        )

    def close(self) -> None:
        self.client.close()


def write_markers(targets: list[Target], spread: float) -> list[float]:
    """Every marker, as ``dags/edw_sensors.py``'s ``load`` writes one, at a steady pace over ``spread`` seconds
    (one poke interval: the writes fall at every phase of the pokers' ticks); returns each one's write time."""
    written = []
    began = time.monotonic()
    for n, t in enumerate(targets):
        time.sleep(max(0.0, began + spread * n / len(targets) - time.monotonic()))
        marker = Path(t.path)
        partial = marker.with_name(f".{marker.name}.{os.getpid()}")
        partial.write_text(json.dumps({"job": marker.stem, "run_id": "bench"}) + "\n")
        partial.rename(marker)  # atomic: a sensor never sees a half-written marker
        written.append(time.time())
    return written


def run_variant(variant: str, args, base: Path, targets: list[Target], url: str | None) -> dict:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(base / "airflow-home"),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        "AIRFLOW_HA_SENSOR_STATUS_URL": url or "none",  # the product's switch (status.ENV_STATUS_URL)
    }
    common = [
        *("--sensors", str(args.sensors), "--targets", str(args.targets), "--shards", str(args.shards)),
        *("--virtual-shards", str(args.virtual_shards), "--days", str(args.days)),
        *("--interval", str(args.interval), "--window", str(args.window), "--marker-root", str(args.marker_root)),
    ]
    redis = RedisCommands(url) if url else None
    children: list[Child] = []
    try:
        for k in range(args.shards):
            cmd = [sys.executable, "-m", "benchmarks.sensor_scale", "--child", variant, str(k), *common]
            child_env = {**env, "AIRFLOW_HA_SENSOR_SHARD_ORDINAL": str(k)}  # the hub's shard label
            children.append(Child(cmd, child_env, base / f"{variant}-{k}.stderr"))
        ready = [c.expect("ready", 600 + args.interval) for c in children]
        commands0 = redis.total() if redis else 0
        for c in children:
            c.send("start")
        measured = [c.expect("measured", args.interval * args.window + 300) for c in children]
        commands1 = redis.total() if redis else 0
        written = write_markers(targets, args.interval)
        writes_file = base / f"{variant}-written.json"
        writes_file.write_text(json.dumps(written))
        for c in children:
            c.send(str(writes_file))
        done = [c.expect("done", max(60.0, 10 * args.interval) + 120) for c in children]
        for c in children:
            c.proc.wait(timeout=120)
    finally:
        for c in children:
            c.stop()
        if redis is not None:
            redis.close()
    for t in targets:  # the next variant starts with no marker written
        Path(t.path).unlink(missing_ok=True)
    return {
        "processes": [{**r, **m} for r, m in zip(ready, measured, strict=True)],
        "latencies": [x for d in done for x in d["latencies"]],
        "missing": sum(d["missing"] for d in done),
        "redis_per_interval": (commands1 - commands0) / args.window if redis else None,
    }


def summarise(result: dict) -> dict:
    procs = result["processes"]
    sensors = sum(p["sensors"] for p in procs)
    latencies = result["latencies"]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [math.nan] * 99
    return {
        "bytes_per_sensor": sum(p["rss1_kb"] - p["rss0_kb"] for p in procs) * 1024 / sensors,
        "cpu": statistics.mean(p["cpu_per_interval"] for p in procs),
        "cpu_max": max(p["cpu_per_interval"] for p in procs),
        "pokes": statistics.mean(p["pokes_per_interval"] for p in procs),
        "calls": statistics.mean(p["calls_per_interval"] for p in procs),
        "held": statistics.mean(p["targets_held"] for p in procs),
        "sensors": statistics.mean(p["sensors"] for p in procs),
        "sensors_max": max(p["sensors"] for p in procs),
        "p50": cuts[49],
        "p99": cuts[98],
        "missing": result["missing"],
        "redis": result["redis_per_interval"],
    }


def _extrapolate(name: str, row: dict | None, count_key: str, unit: str, why: str, interval: float) -> None:
    """One variant's linear extrapolation: where one process becomes CPU-bound, and sensors per GiB."""
    if not row or row["cpu"] <= 0:
        return
    fraction = row["cpu"] / interval
    line = (
        f"  {name}: {row['cpu']:.3f} CPU s per interval for {row[count_key]:.0f} {unit.split()[-1]} "
        f"({100 * fraction:.2f}% of a core); {why}, so one process is CPU-bound near "
        f"{row[count_key] / fraction:,.0f} {unit} at this interval"
    )
    if row["bytes_per_sensor"] > 0:
        line += f"; memory: {2**30 / row['bytes_per_sensor']:,.0f} waiting sensors per GiB"
    print(line)


def report(args, results: dict, status: str) -> None:
    shards = chart_sensor_shards()
    print(
        f"\n{args.sensors} sensors on {args.targets} marker files ({args.sensors / args.targets:g} per target) in "
        f"{args.days} day directories; {args.shards} processes per variant; poke interval {args.interval:g} s; "
        f"{args.window} intervals measured after 1 warm-up interval"
    )
    print(
        f"smart: ShardMap({args.shards} groups, {args.virtual_shards} virtual shards); status store: {status}. "
        "stock: FileTrigger, sensors dealt round-robin"
    )
    header = (
        f"{'variant':<7} {'proc':>4} {'sensors':>7} {'targets':>7} {'RSS MB before':>13} {'after':>7} "
        f"{'B/sensor':>8} {'CPU s/int':>9} {'CPU %int':>8} {'pokes/int':>9} {'fs calls/int':>12}"
    )
    print(header)
    print("-" * len(header))
    for variant, result in results.items():
        for k, p in enumerate(result["processes"]):
            per_sensor = (p["rss1_kb"] - p["rss0_kb"]) * 1024 / p["sensors"] if p["sensors"] else math.nan
            print(
                f"{variant:<7} {k:>4} {p['sensors']:>7} {p['targets_held']:>7} {p['rss0_kb'] / 1024:>13.1f} "
                f"{p['rss1_kb'] / 1024:>7.1f} {per_sensor:>8.0f} {p['cpu_per_interval']:>9.3f} "
                f"{100 * p['cpu_per_interval'] / args.interval:>7.1f}% {p['pokes_per_interval']:>9.1f} "
                f"{p['calls_per_interval']:>12.1f}"
            )
    sums = {variant: summarise(result) for variant, result in results.items()}
    smart, stock = sums.get("smart"), sums.get("stock")

    def ratio(key: str) -> str:
        if not (smart and stock) or smart[key] in (None, 0) or stock[key] is None:
            return "-"
        return f"{stock[key] / smart[key]:.1f}"

    def cell(s: dict | None, key: str, fmt: str) -> str:
        return "-" if s is None or s[key] is None else format(s[key], fmt)

    print()
    print(f"{'per variant':<44} {'smart':>10} {'stock':>10} {'stock/smart':>11}")
    rows = (
        ("memory per waiting sensor (bytes)*", "bytes_per_sensor", ".0f"),
        ("CPU s per interval per process (mean)", "cpu", ".3f"),
        ("CPU s per interval per process (max)", "cpu_max", ".3f"),
        ("pokes per interval per process", "pokes", ".1f"),
        ("distinct targets held per process", "held", ".1f"),
        ("file-system calls per interval per process", "calls", ".1f"),
        ("marker written -> sensor event p50 (s)**", "p50", ".3f"),
        ("marker written -> sensor event p99 (s)", "p99", ".3f"),
        ("sensors with no event", "missing", "d"),
        ("Redis commands per interval (all processes)", "redis", ".0f"),
    )
    for label, key, fmt in rows:
        print(f"{label:<44} {cell(smart, key, fmt):>10} {cell(stock, key, fmt):>10} {ratio(key):>11}")
    print(
        "pokes = target checks (smart: the hub's poke counter, one per distinct target per tick; stock: glob calls);"
        " fs calls = os.listdir per directory batch (smart) or glob (stock); Redis = INFO commandstats of the "
        "masters over the window, status writes only"
    )
    print(
        "* RSS growth of the process over its sensors: includes what the process pays once, with its first trigger "
        "(smart: the hub's poke threads, the status store's client), which weighs more at small sizes"
    )
    print(
        f"** over all sensors; the markers were written at a steady pace over one interval ({args.interval:g} s), "
        "so a wait of up to one interval for the next poke is part of it"
    )
    for variant, result in results.items():
        for k, p in enumerate(result["processes"]):
            if p["started"] < p["sensors"]:
                print(
                    f"! {variant} process {k}: only {p['started']} of {p['sensors']} triggers had started when measured"
                )

    capacity = next(p["capacity"] for r in results.values() for p in r["processes"])
    pods = math.ceil(args.sensors / capacity)
    print(
        f"\nAirflow's [triggerer] capacity here: {capacity} triggers per triggerer, so {args.sensors} stock deferrable "
        f"sensors need {pods} triggerer pod{'s' if pods != 1 else ''} at that capacity."
    )
    if smart:
        shard_capacity, most = int(shards["capacity"]), smart["sensors_max"]
        verdict = (
            "one pod holds them all, so the group keeps every sensor when one pod is lost"
            if most <= shard_capacity
            else (f"more than one pod holds: raise sensorShards.capacity to at least {most}")
        )
        print(
            f"Shard pods run with the chart's sensorShards.capacity = {shard_capacity} (AIRFLOW__TRIGGERER__CAPACITY), "
            f"not Airflow's {capacity}: this run puts up to {most} sensors in one shard group; {verdict}."
        )

    print("\nExtrapolation (linear in the measured rates, on this machine's shared cores; not measured):")
    smart_why = (
        "its per-interval work is per distinct target (one poke and one status write each; a waiting sensor adds none)"
    )
    _extrapolate("smart", smart, "held", "distinct targets", smart_why, args.interval)
    _extrapolate("stock", stock, "sensors", "sensors", "every sensor pokes on its own", args.interval)


def parse(argv: list[str]) -> argparse.Namespace:
    shards = chart_sensor_shards()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sensor_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--sensors", type=int, default=10000, help="waiting sensors in all (default 10000)")
    parser.add_argument("--targets", type=int, default=1000, help="distinct marker files (default 1000)")
    parser.add_argument(
        "--shards", type=int, default=int(shards["count"]), help="processes per variant (chart: sensorShards.count)"
    )
    parser.add_argument("--virtual-shards", type=int, default=int(shards["virtualShards"]), help=argparse.SUPPRESS)
    parser.add_argument("--days", type=int, default=3, help="day directories the markers are spread over")
    parser.add_argument("--interval", type=float, default=5.0, help="poke interval of every sensor (s)")
    parser.add_argument("--window", type=int, default=3, help="intervals measured, after one warm-up interval")
    parser.add_argument(
        "--status-store",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="smart shards record poke status in Redis, as a shard pod does (default: on, a harness Redis Cluster)",
    )
    parser.add_argument("--redis-url", help="status store URL (rediscluster:// or redis://) instead of a harness one")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "ORDINAL"), help=argparse.SUPPRESS)
    parser.add_argument("--marker-root", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.child:
        return child(args)

    base = Path(tempfile.mkdtemp(prefix="bench-sensor-scale-"))
    args.marker_root = str(base / "markers")
    targets = plan(args)
    for directory in {os.path.dirname(t.path) for t in targets}:
        os.makedirs(directory, exist_ok=True)  # the day's directory exists; its markers do not yet
    cluster = None
    url = status = None
    results: dict = {}
    try:
        if args.status_store and args.redis_url:
            url, status = args.redis_url, "on, --redis-url"
        elif args.status_store:
            from tests.harness.servers.redis_cluster import RedisCluster

            cluster = RedisCluster(base_dir=base / "redis", password=secrets.token_hex(8))
            cluster.start()
            url, status = cluster.url(), "on, harness Redis Cluster (3 masters + 3 replicas)"
        else:
            status = "off"
        for variant in ("smart", "stock"):
            print(f"  {variant} ...", flush=True)
            started = time.monotonic()
            results[variant] = run_variant(variant, args, base, targets, url if variant == "smart" else None)
            print(f"  {variant} done in {time.monotonic() - started:.0f}s", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    report(args, results, status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
