"""``airflow-ha sensor-shard`` (what a shard pod runs) and ``airflow-ha sensors list``."""

from __future__ import annotations

import json
import os
import re
import socket
import sys

from airflow_ha.sensors.errors import SensorConfigError
from airflow_ha.sensors.shards import ShardMap
from airflow_ha.settings import ENV_SHARD_ORDINAL, SettingsError

# A shard pod's name: <release>-sensor-shard-<g> (StatefulSet, releases before shard groups) or
# <release>-sensor-shard-<g>-<replicaset hash>-<pod suffix> (the per-group Deployment).
_SHARD_POD = re.compile(r"-sensor-shard-(\d+)(?:-[a-z0-9]+-[a-z0-9]+)?$")


def ordinal_from_hostname(hostname: str) -> int | None:
    """The shard group in a pod name; a plain ``<name>-N`` as the fallback; None when there is none.

    A Deployment pod's random suffix may be all digits, so the ``sensor-shard-<g>`` form is read first.
    """
    match = _SHARD_POD.search(hostname) or re.search(r"-(\d+)$", hostname)
    return int(match.group(1)) if match else None


def shard_ordinal(explicit: int | None = None) -> int:
    """This process's shard group: ``--ordinal``, else AIRFLOW_HA_SENSOR_SHARD_ORDINAL (the chart's
    per-group Deployment sets it), else the pod hostname (StatefulSet pods of older releases)."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(ENV_SHARD_ORDINAL, "")
    if raw:
        if not raw.isdigit():
            raise SettingsError(f"{ENV_SHARD_ORDINAL}={raw!r} is not a non-negative integer")
        return int(raw)
    hostname = socket.gethostname()
    ordinal = ordinal_from_hostname(hostname)
    if ordinal is None:
        raise SettingsError(
            f"cannot tell this shard's ordinal: set {ENV_SHARD_ORDINAL} or run as <name>-N (host {hostname!r})"
        )
    return ordinal


def triggerer_argv(ordinal: int, shards: ShardMap, capacity: int | None) -> list[str]:
    argv = ["airflow", "triggerer", "--queues", ",".join(shards.queues_for_pod(ordinal))]
    if capacity:
        argv += ["--capacity", str(capacity)]
    return argv


def run_shard(args) -> int:
    from airflow.configuration import conf

    try:
        shards = ShardMap.from_env()
        ordinal = shard_ordinal(args.ordinal)
        argv = triggerer_argv(ordinal, shards, args.capacity)
    except (SettingsError, SensorConfigError) as exc:
        print(f"airflow-ha sensor-shard: {exc}", file=sys.stderr)
        return 2
    if not conf.getboolean("triggerer", "queues_enabled", fallback=False):
        print(
            "airflow-ha sensor-shard: [triggerer] queues_enabled must be True (AIRFLOW__TRIGGERER__QUEUES_ENABLED)",
            file=sys.stderr,
        )
        return 2
    os.environ[ENV_SHARD_ORDINAL] = str(ordinal)  # the hub labels its status records with it
    print(
        f"sensor shard group {ordinal} of {shards.sensor_shards}: {len(argv[3].split(','))} of {shards.virtual_shards} "
        f"virtual shards; exec {' '.join(argv[:3])} <queues>",
        flush=True,
    )
    if args.dry_run:
        print(" ".join(argv))
        return 0
    os.execvp(argv[0], argv)  # the triggerer becomes this process: signals and exit codes reach it directly
    return 1  # pragma: no cover


def list_sensors(args) -> int:
    from airflow.utils.session import create_session

    from airflow_ha.sensors.listing import finished_sensors, status_store_or_none, waiting_sensors

    store = status_store_or_none()
    with create_session() as session:
        groups = waiting_sensors(session, store)
    finished = finished_sensors(store) if args.all else []
    if args.output == "json":
        shown = {"waiting": [g.as_dict() for g in groups]}
        if args.all:
            shown["finished"] = [f.as_dict() for f in finished]
        print(json.dumps(shown if args.all else shown["waiting"], indent=2, default=str))
        return 0
    _print_waiting(groups, args.verbose)
    if args.all:
        _print_finished(finished)
    return 0


def _print_waiting(groups, verbose: bool) -> None:
    if not groups:
        print("no smart sensor is waiting")
        return
    header = f"{'hashcode':>20}  {'shard':>5}  {'waiters':>7}  {'age':>7}  {'pokes':>5}  {'last poke':<8}  target"
    print(header)
    for g in groups:
        print(
            f"{g.hashcode:>20}  {g.shard:>5}  {len(g.waiters):>7}  {g.age_seconds:>6.0f}s  {g.pokes:>5}  "
            f"{g.last_result:<8}  {g.description}"
        )
        if verbose:
            print(f"{'':>22}last: {g.last_detail or '-'} at {g.last_poke_at or '-'} by {g.poked_by or '-'}")
            for w in g.waiters:
                print(f"{'':>22}{w.dag_id}.{w.task_id} run={w.run_id} map={w.map_index} try={w.try_number}")


def _print_finished(finished) -> None:
    from datetime import UTC, datetime

    from airflow_ha.settings import history_days

    print(f"\nfinished in the last {history_days()} day(s): {len(finished)}")
    if not finished:
        return
    columns = f"{'finished (UTC)':<19}  {'outcome':<7}  {'waited':>8}  {'pokes':>5}  {'shard':<8}"
    print(f"{columns}  task, then target: last poke")
    for f in finished:
        at = datetime.fromtimestamp(f.finished_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        waited = "-" if f.waited_seconds is None else f"{f.waited_seconds:.0f}s"
        task = f"{f.dag_id}.{f.task_id} run={f.run_id}" + (f" map={f.map_index}" if f.map_index >= 0 else "")
        print(f"{at:<19}  {f.outcome:<7}  {waited:>8}  {f.pokes:>5}  {f.shard:<8}  {task}")
        print(f"{'':>21}{f.description}: {f.detail}")


def register(subparsers) -> None:
    shard = subparsers.add_parser("sensor-shard", help="run a triggerer on this pod's sensor shard group's queues")
    shard.add_argument("--ordinal", type=int, help=f"shard group (default: ${ENV_SHARD_ORDINAL} or the pod hostname)")
    shard.add_argument("--capacity", type=int, help="triggers this shard runs at most (airflow triggerer --capacity)")
    shard.add_argument("--dry-run", action="store_true", help="print the triggerer command instead of running it")
    shard.set_defaults(func=run_shard)

    sensors = subparsers.add_parser("sensors", help="smart sensors")
    sensors_sub = sensors.add_subparsers(dest="sensors_command", required=True)
    listing = sensors_sub.add_parser("list", help="waiting smart sensors grouped by hashcode")
    listing.add_argument("-o", "--output", choices=("table", "json"), default="table")
    listing.add_argument("-v", "--verbose", action="store_true", help="show every waiting task and the last poke")
    listing.add_argument(
        "-a", "--all", action="store_true", help="also the sensors that finished within the retention period"
    )
    listing.set_defaults(func=list_sensors)
