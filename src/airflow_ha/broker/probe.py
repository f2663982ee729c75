"""``airflow-ha broker-probe``: numbered messages through the broker, to count what a failure loses.

``publish`` sends ``<prefix>-<n>`` messages to one queue at a steady rate and prints one line per
outcome, so that whoever reads its output (a test, after the fact, from ``kubectl logs``) knows exactly
which messages the broker acknowledged::

    ACK A-000042 12.804          (acknowledged at 12.804 s after the start)
    ERR A-000043 12.911 BrokerUnavailable: ...   (refused: published again until acknowledged)
    DONE {"acked": 540, "errors": 12, ...}

A refused message is published again (as Celery's publish retry does), so every id ends up acknowledged
or listed as ``unsent`` in the DONE line. ``drain`` consumes a queue until it stays empty and prints
the ids it received as one JSON line. Lost = acknowledged and never received.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable

PROBE_QUEUE_PREFIX = "probe"


def _connection(url: str, options: dict):
    from kombu import Connection

    import airflow_ha.broker

    airflow_ha.broker.register()
    return Connection(url, transport_options=options, connect_timeout=5)


def publish(
    url: str,
    queue: str,
    prefix: str,
    seconds: float,
    rate: float,
    options: dict,
    out: Callable[[str], None] = print,
    grace: float = 120.0,
) -> dict:
    """Publish for ``seconds``; a refused id is retried (for at most ``grace`` s after the end)."""
    from kombu import Producer, Queue

    start = time.monotonic()
    stop_new, give_up = start + seconds, start + seconds + grace
    interval = 1.0 / rate
    acked = errors = reconnects = 0
    n = 0
    pending: str | None = None
    conn = producer = None
    while True:
        now = time.monotonic()
        if pending is None:
            if now >= stop_new:
                break
            n += 1
            pending = f"{prefix}-{n:06d}"
        if now >= give_up:
            break
        try:
            if producer is None:
                conn = _connection(url, options)
                producer = Producer(conn)
            producer.publish({"id": pending}, routing_key=queue, declare=[Queue(queue)], retry=False)
        except Exception as exc:  # every refusal is reported and the id sent again
            errors += 1
            out(f"ERR {pending} {time.monotonic() - start:.3f} {type(exc).__name__}: {str(exc)[:200]}")
            with contextlib.suppress(Exception):
                conn.release()
            conn = producer = None
            reconnects += 1
            time.sleep(min(interval * 5, 0.5))
            continue
        acked += 1
        out(f"ACK {pending} {time.monotonic() - start:.3f}")
        pending = None
        time.sleep(max(0.0, start + n * interval - time.monotonic()))
    if conn is not None:
        conn.release()
    summary = {"acked": acked, "errors": errors, "reconnects": reconnects, "unsent": [pending] if pending else []}
    out("DONE " + json.dumps(summary))
    return summary


def drain(url: str, queue: str, idle: float, options: dict, timeout: float = 300.0) -> list[str]:
    """Consume and ack until nothing arrived for ``idle`` seconds; the ids in arrival order."""
    from kombu import Consumer, Queue

    received: list[str] = []

    def on_message(body, message):
        received.append(body["id"])
        message.ack()

    deadline = time.monotonic() + timeout
    with _connection(url, options) as conn, Consumer(conn, [Queue(queue)], callbacks=[on_message], prefetch_count=100):
        last = time.monotonic()
        while time.monotonic() - last < idle and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
                last = time.monotonic()
            except TimeoutError:
                pass
    return received


def parse_output(text: str) -> tuple[list[str], dict]:
    """(acknowledged ids, DONE summary) from ``publish``'s output; no DONE line -> summary {}."""
    acked, summary = [], {}
    for line in text.splitlines():
        if line.startswith("ACK "):
            acked.append(line.split()[1])
        elif line.startswith("DONE "):
            summary = json.loads(line[5:])
    return acked, summary


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"broker-probe: --option wants KEY=VALUE, got {pair!r}")
        options[key] = value
    from airflow_ha.broker.options import BrokerOptions

    BrokerOptions.from_mapping(options)  # a bad option fails here, naming it
    return options


def run(args) -> int:
    from airflow_ha.broker.configured_url import broker_url

    url = broker_url(args.url, "broker-probe")
    if not url:
        return 2
    from airflow_ha.broker.errors import BrokerConfigError

    try:
        options = _options(args.option)
    except BrokerConfigError as exc:
        print(f"broker-probe: {exc}", file=sys.stderr)
        return 2
    if args.action == "publish":
        publish(url, args.queue, args.prefix, args.seconds, args.rate, options, out=lambda s: print(s, flush=True))
    else:
        print(json.dumps({"received": drain(url, args.queue, args.idle, options)}), flush=True)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("broker-probe", help=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("publish", "drain"))
    parser.add_argument("--url", help="broker URL (default: [celery] broker_url / AIRFLOW__CELERY__BROKER_URL)")
    parser.add_argument("--queue", default=f"{PROBE_QUEUE_PREFIX}-0")
    parser.add_argument("--prefix", default="m", help="publish: message ids are PREFIX-000001, ...")
    parser.add_argument("--seconds", type=float, default=60.0, help="publish: how long to publish new ids")
    parser.add_argument("--rate", type=float, default=20.0, help="publish: messages per second")
    parser.add_argument("--idle", type=float, default=5.0, help="drain: stop after this many quiet seconds")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="a transport option (repeatable)"
    )
    parser.set_defaults(func=run)
