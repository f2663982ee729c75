"""``airflow-ha broker-check``: is the Redis Cluster broker reachable, authenticated and healthy?

Used by the chart as the Celery worker readiness probe. Exit 0 and one line on success; exit 1 with the
problem named (bad URL, unreachable seeds, wrong password, uncovered slots) otherwise.
``--show-options`` prints, as one JSON line, the transport options in effect for THIS process's Airflow
Celery app (``[celery] broker_url`` + ``celery_config_options`` + ``[celery_broker_transport_options]``),
resolved exactly as the transport resolves them: run it in a worker or scheduler pod to see what the
release really uses.
"""

from __future__ import annotations

import sys

from airflow_ha.broker.configured_url import broker_url


def check(url: str, timeout: float | None = None) -> str:
    """Return a one-line summary; raise with a clear message when the broker is not usable."""
    from airflow_ha.broker.health import check_cluster
    from airflow_ha.broker.options import BrokerOptions
    from airflow_ha.broker.url import parse

    parsed = parse(url)
    options = dict(parsed.options)
    if timeout is not None:
        options["socket_connect_timeout"] = timeout
    info = check_cluster(parsed, BrokerOptions.from_mapping(options))
    return (
        f"ok: {parsed.as_uri()} cluster_state={info.get('cluster_state')} "
        f"slots_assigned={info.get('cluster_slots_assigned')} known_nodes={info.get('cluster_known_nodes')} "
        f"cluster_size={info.get('cluster_size')} masters={info.get('masters')} replicas={info.get('replicas')}"
    )


def options_in_effect() -> dict:
    """The transport options Airflow's own Celery app would run with, resolved as the transport does."""
    from airflow.providers.celery.executors.celery_executor_utils import app

    from airflow_ha.broker.options import BrokerOptions
    from airflow_ha.broker.url import parse

    url = app.conf.broker_url
    opts = BrokerOptions.merged(parse(url).options, app.conf.broker_transport_options)
    return {"broker": parse(url).as_uri(), "options": opts.as_dict()}


def run(args) -> int:
    if args.show_options:
        import json

        try:
            print(json.dumps(options_in_effect(), sort_keys=True))
        except Exception as exc:
            print(f"broker-check: FAILED: {exc}", file=sys.stderr)
            return 1
        return 0
    url = broker_url(args.url, "broker-check")
    if not url:
        return 2
    try:
        print(check(url, args.timeout))
    except Exception as exc:
        print(f"broker-check: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("broker-check", help=__doc__.splitlines()[0])
    parser.add_argument("--url", help="broker URL (default: [celery] broker_url / AIRFLOW__CELERY__BROKER_URL)")
    parser.add_argument("--timeout", type=float, default=None, help="connect timeout per seed node, seconds")
    parser.add_argument(
        "--show-options",
        action="store_true",
        help="print the transport options in effect for this Airflow's Celery app (JSON) and exit",
    )
    parser.set_defaults(func=run)
