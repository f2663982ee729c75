"""Smart sensors vs Airflow's own sensors: 1,000 sensors waiting on 50 targets, measured in one run.

Variants, each in a fresh subprocess so CPU time is its own:

* ``smart``      - 1,000 :class:`SmartSensorTrigger` waiting in one event loop, as on one shard (the
                   real trigger and poke hub; status store off);
* ``deferrable`` - 1,000 stock deferrable sensors' triggers (``FileTrigger`` of the standard provider)
                   in one event loop, as in a triggerer;
* ``poke``       - 1,000 stock poke-mode sensors (``FileSensor`` / ``SqlSensor``), one thread each
                   standing in for the worker slot each would hold (a real deployment runs a process per
                   slot, so this understates their cost).

Two kinds of target: marker files (``edw.NNNN.job`` in one directory) and job-history rows in a MySQL
table (``SqlSensor`` has no deferrable mode in Airflow 3.3.2's common-sql provider, so that row has no
deferrable variant). Nothing is ready during the measurement; reported per poke interval: pokes (target
checks), file-system calls or SQL statements, and CPU seconds of the process. Ratios are against the
smart variant. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SENSORS, TARGETS = 1000, 50


# -- measured in the child -----------------------------------------------------------------------
class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def wrap(self, fn):
        def counted(*args, **kwargs):
            with self.lock:
                self.n += 1
            return fn(*args, **kwargs)

        return counted


def _questions(admin_uri: str | None) -> int:
    if not admin_uri:
        return 0
    import MySQLdb
    from sqlalchemy.engine import make_url

    url = make_url(admin_uri)
    conn = MySQLdb.connect(host=url.host, port=url.port, user=url.username, password=url.password)
    try:
        cur = conn.cursor()
        cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
        return int(cur.fetchone()[1])
    finally:
        conn.close()


def _targets(kind: str, marker_dir: str) -> list[dict]:
    if kind == "file":
        return [{"path": f"{marker_dir}/edw.{i:04d}.job"} for i in range(TARGETS)]
    return [
        {"conn_id": "edw_db", "table": "edw_job_history", "job": f"edw.{i:04d}", "business_date": "2026-11-24"}
        for i in range(TARGETS)
    ]


def _measure(args, start_waiting, counter: Counter, pokes=None) -> dict:
    """Start the waiters, let one interval pass, then measure ``window`` intervals.

    ``pokes()`` returns target checks so far; by default every counted call is one check.
    """
    pokes = pokes or (lambda: counter.n)
    stop = threading.Event()
    start_waiting(stop)
    time.sleep(args.interval * 1.5)
    cpu0, calls0, pokes0, q0 = time.process_time(), counter.n, pokes(), _questions(args.admin_uri)
    time.sleep(args.interval * args.window)
    cpu1, calls1, pokes1, q1 = time.process_time(), counter.n, pokes(), _questions(args.admin_uri)
    stop.set()
    intervals = args.window
    return {
        "pokes_per_interval": (pokes1 - pokes0) / intervals,
        "calls_per_interval": (calls1 - calls0) / intervals,
        "sql_per_interval": max(0, q1 - q0 - 1) / intervals,  # minus the second SHOW STATUS itself
        "cpu_per_interval": (cpu1 - cpu0) / intervals,
    }


def _in_loop(coroutines_factory):
    """Run trigger coroutines in a background event loop thread until told to stop."""

    def start(stop: threading.Event) -> None:
        def runner():
            async def main():
                tasks = [asyncio.ensure_future(c) for c in coroutines_factory()]
                while not stop.is_set():
                    await asyncio.sleep(0.1)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            asyncio.run(main())

        threading.Thread(target=runner, daemon=True).start()

    return start


async def _drain(trigger) -> None:
    async for _event in trigger.run():
        return


def child(args) -> dict:
    targets = _targets(args.kind, args.marker_dir)
    waits = [targets[i % TARGETS] for i in range(SENSORS)]
    counter = Counter()
    hub_stats: dict = {}
    if args.variant == "smart":
        from airflow_ha.sensors import hub as hub_module
        from airflow_ha.sensors.hashcode import hashcode
        from airflow_ha.sensors.pokers import get_poker
        from airflow_ha.sensors.triggers import SmartSensorTrigger

        poker = get_poker("file" if args.kind == "file" else "job_history")
        poker.poke_batch = counter.wrap(poker.poke_batch)  # one call = one listing / one query
        hub_module.StatusStore.from_config = classmethod(lambda cls: None)

        def triggers():
            return [
                _drain(
                    SmartSensorTrigger(
                        kind=poker.kind,
                        target=t,
                        hashcode=hashcode(poker.kind, t),
                        virtual_shard=0,
                        poke_interval=args.interval,
                        deadline=time.time() + 3600,
                        description=poker.describe(t),
                    )
                )
                for t in waits
            ]

        def hub_pokes() -> int:
            return sum(sum(h.pokes.values()) for h in list(hub_module._HUBS.values()))

        result = _measure(args, _in_loop(triggers), counter, pokes=hub_pokes)
        hub_stats = {"targets_held": sum(len(h.entries) for h in hub_module._HUBS.values())}
    elif args.variant == "deferrable":
        import airflow.providers.standard.triggers.file as stock

        stock.glob = counter.wrap(stock.glob)
        result = _measure(
            args,
            _in_loop(
                lambda: [_drain(stock.FileTrigger(filepath=t["path"], poke_interval=args.interval)) for t in waits]
            ),
            counter,
        )
    else:  # poke: one thread per sensor, as one worker slot per sensor
        if args.kind == "file":
            import airflow.providers.standard.sensors.filesystem as stock

            stock.glob = counter.wrap(stock.glob)
            sensors = [stock.FileSensor(task_id=f"s{i}", filepath=t["path"]) for i, t in enumerate(waits)]
        else:
            from airflow.providers.common.sql.sensors.sql import SqlSensor

            sql = "SELECT 1 FROM edw_job_history WHERE job_name = %s AND business_date = %s AND status = 'success'"
            sensors = [
                SqlSensor(task_id=f"s{i}", conn_id="edw_db", sql=sql, parameters=(t["job"], t["business_date"]))
                for i, t in enumerate(waits)
            ]
            for s in sensors:
                s.poke = counter.wrap(s.poke)

        def start(stop: threading.Event) -> None:
            def loop(sensor, offset):
                time.sleep(offset)
                while not stop.is_set():
                    try:
                        sensor.poke({})
                    except Exception as exc:  # a broken variant must show, not read as "0 pokes"
                        print(f"poke failed: {exc!r}", file=sys.stderr)
                        os._exit(3)
                    stop.wait(args.interval)

            for i, sensor in enumerate(sensors):
                threading.Thread(target=loop, args=(sensor, args.interval * i / SENSORS), daemon=True).start()

        result = _measure(args, start, counter)
    return {**result, **hub_stats}


# -- the parent: servers, variants, table --------------------------------------------------------
def _run_child(variant: str, kind: str, common: list[str], env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.sensors", "--child", variant, kind, *common],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{variant}/{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.sensors")
    parser.add_argument("--interval", type=float, default=2.0, help="poke interval of every sensor (s)")
    parser.add_argument("--window", type=int, default=5, help="intervals measured per variant")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "KIND"))
    parser.add_argument("--marker-dir")
    parser.add_argument("--admin-uri")
    args, _ = parser.parse_known_args(argv)
    if args.child:
        args.variant, args.kind = args.child
        print(json.dumps(child(args)))
        return 0

    from tests.harness.servers.mysql import MySQL

    base = Path(tempfile.mkdtemp(prefix="bench-sensors-"))
    marker_dir = base / "markers"
    marker_dir.mkdir()
    db = MySQL(base / "mysql", password=secrets.token_hex(8))
    db.start()
    try:
        db.root_sql("SET GLOBAL max_connections = 2000")
        edw_uri = db.create_database("edw")
        db.root_sql(
            "CREATE TABLE edw.edw_job_history (job_name VARCHAR(64), business_date DATE, status VARCHAR(16), "
            "KEY (job_name, business_date))"
        )
        db.root_sql("GRANT PROCESS ON *.* TO 'airflow'@'%'; FLUSH PRIVILEGES;")
        env = {
            **os.environ,
            "AIRFLOW_CONN_EDW_DB": edw_uri,
            "AIRFLOW_CONN_FS_DEFAULT": json.dumps({"conn_type": "fs", "extra": {"path": "/"}}),
            "AIRFLOW_HOME": str(base / "airflow-home"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        }
        common = ["--interval", str(args.interval), "--window", str(args.window), "--marker-dir", str(marker_dir)]
        rows = []
        for kind, variants in (("file", ("smart", "deferrable", "poke")), ("sql", ("smart", "poke"))):
            extra = ["--admin-uri", db.sqlalchemy_url] if kind == "sql" else []
            for variant in variants:
                print(f"  {variant:<10} {kind:<4} ...", flush=True)
                rows.append((kind, variant, _run_child(variant, kind, common + extra, env)))
    finally:
        db.stop()

    print(
        f"\n{SENSORS} sensors on {TARGETS} targets, poke interval {args.interval:g} s, {args.window} intervals measured"
    )
    print(
        f"{'kind':<5} {'variant':<11} {'pokes/int':>9} {'fs calls or SQL/int':>20} {'CPU s/int':>9} {'slots held':>10}"
        f"  {'x fewer pokes':>13} {'x less CPU':>10}"
    )
    for kind in ("file", "sql"):
        smart = next(r for k, v, r in rows if k == kind and v == "smart")
        smart_pokes = smart["pokes_per_interval"]
        for k, variant, r in rows:
            if k != kind:
                continue
            calls = r["sql_per_interval"] if kind == "sql" else r["calls_per_interval"]
            pokes = r["pokes_per_interval"]
            slots = SENSORS if variant == "poke" else 0
            ratio_pokes = pokes / smart_pokes if smart_pokes else float("nan")
            ratio_cpu = r["cpu_per_interval"] / smart["cpu_per_interval"] if smart["cpu_per_interval"] else float("nan")
            print(
                f"{kind:<5} {variant:<11} {pokes:>9.0f} {calls:>20.1f} {r['cpu_per_interval']:>9.3f} {slots:>10}"
                f"  {ratio_pokes:>13.1f} {ratio_cpu:>10.1f}"
            )
    print(
        "pokes = target checks per interval; 'fs calls or SQL' = directory listings / glob calls (file) or SQL "
        "statements the server counted (sql: SHOW GLOBAL STATUS 'Questions', connection set-up included)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
