"""This project's own metrics, sent through Airflow's metrics backend.

A process that runs Airflow (scheduler, Celery worker, triggerer, sensor shard, api-server) sends these
wherever its Airflow metrics go: ``[metrics] statsd_on`` (the chart's statsd-exporter, which Prometheus
scrapes), ``statsd_datadog_enabled`` or ``otel_on``, with Airflow's prefix, allow and block lists. A process
that has not loaded Airflow's configuration (the broker benchmark, plain Celery on the transport) sends
nothing: importing Airflow there would cost seconds and write an ``airflow.cfg``.

Labels are name segments (``airflow_ha.sensors.waiting.<shard>.<pod>``), the shape Airflow's own metrics
have (``dag.<dag_id>.<task_id>.duration``), so plain StatsD carries them; the chart's statsd-exporter
mapping turns them back into Prometheus labels. They are also passed as tags for the tag-aware backends.

:data:`METRICS` is the one list of what exists: the README's table and the chart's exporter mapping are
checked against it by tests.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)

PREFIX = "airflow_ha"


@dataclass(frozen=True)
class Metric:
    name: str  # after the prefix, without label segments: "broker.publish"
    type: str  # counter | gauge | timer
    labels: tuple[str, ...]
    description: str

    @property
    def prometheus(self) -> str:
        """The series name the chart's statsd-exporter gives it."""
        base = f"{PREFIX}_{self.name.replace('.', '_')}"
        return {"counter": f"{base}_total", "timer": f"{base}_seconds"}.get(self.type, base)


METRICS: tuple[Metric, ...] = (
    Metric(
        "broker.master_changes",
        "counter",
        (),
        "slot-map refreshes that found a slot served by another master than before: a failover or a reshard "
        "seen by this process",
    ),
    Metric("broker.slot_map_refreshes", "counter", (), "slot-map reloads (after MOVED, a lost node, a retry)"),
    Metric(
        "broker.retries",
        "counter",
        ("error",),
        "broker commands retried through a failover or reshard (publishes, acks, a consumer's waits and "
        "subscriptions), by the error that made them retry",
    ),
    Metric(
        "broker.stall",
        "timer",
        (),
        "how long a broker command that had to retry waited from its first error to its success (the "
        "failover as a publish or a consume saw it)",
    ),
    Metric(
        "broker.wait_shortfalls",
        "counter",
        ("kind", "policy"),
        "writes (publish or ack) that fewer replicas acknowledged than replication_wait_replicas",
    ),
    Metric(
        "broker.wait_refusals",
        "counter",
        ("kind",),
        "publishes refused by replication_wait_policy (raise, or auto on a master cut off from its replicas)",
    ),
    Metric(
        "broker.redelivered",
        "counter",
        ("queue",),
        "messages delivered again (restored after visibility_timeout, a worker lost, a reject with requeue)",
    ),
    Metric("broker.publish", "timer", (), "publish latency, the replication wait included"),
    Metric("sensors.waiting", "gauge", ("shard", "pod"), "smart sensors waiting in this sensor-shard pod"),
    Metric("sensors.targets", "gauge", ("shard", "pod"), "distinct targets poked by this sensor-shard pod"),
    Metric("sensors.pokes", "counter", ("shard", "kind"), "target pokes (one per distinct target per interval)"),
    Metric("sensors.poke_errors", "counter", ("shard", "kind"), "pokes that failed (error, slow or hung)"),
    Metric("sensors.poke", "timer", ("kind",), "latency of one poke batch (one call poking a group of targets)"),
    Metric(
        "sensors.marker_to_success",
        "timer",
        ("kind",),
        "from the marker file's modification time to the sensor's success (file sensors)",
    ),
)
BY_NAME = {m.name: m for m in METRICS}

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def label(value: object) -> str:
    """A label value as one name segment: no dots (they separate segments), only StatsD-safe characters."""
    return _UNSAFE.sub("_", str(value)) or "_"


class _Backend:
    """Airflow's stats logger for this process, made on first use; a forked child makes its own (as Airflow's
    own stats module does), so no call on the publish path asks for the pid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made = False
        self._logger = None

    def get(self):
        if self._made:
            return self._logger
        with self._lock:
            if not self._made:
                self._logger = self._make()
                self._made = True
        return self._logger

    @staticmethod
    def _make():
        if "airflow.configuration" not in sys.modules:
            return None  # not an Airflow process: nothing configured where metrics go
        try:
            from airflow.observability.metrics.stats_utils import get_stats_factory

            return get_stats_factory()()
        except Exception as exc:  # metrics must never stop a publish or a sensor
            log.warning("airflow-ha metrics disabled: Airflow's metrics backend failed to start: %s", exc)
            return None

    def reset(self) -> None:
        self._lock = threading.Lock()  # a lock held by another thread at fork time stays held in the child
        self._made, self._logger = False, None


_backend = _Backend()
os.register_at_fork(after_in_child=_backend.reset)


def _stat(name: str, labels: dict[str, object], kind: str) -> tuple[str, dict[str, str]]:
    metric = BY_NAME.get(name)
    if metric is None or metric.type != kind:
        raise ValueError(f"airflow_ha metric {name!r} is not a declared {kind} (airflow_ha.metrics.METRICS)")
    if set(labels) != set(metric.labels):
        raise ValueError(f"airflow_ha metric {name!r} takes labels {metric.labels}, got {tuple(labels)}")
    values = {k: label(labels[k]) for k in metric.labels}
    return ".".join([PREFIX, name, *values.values()]), values


def incr(name: str, count: int = 1, **labels: object) -> None:
    stat, tags = _stat(name, labels, "counter")
    logger = _backend.get()
    if logger is not None and count:
        _safely(logger.incr, stat, count, tags=tags)


def gauge(name: str, value: float, **labels: object) -> None:
    stat, tags = _stat(name, labels, "gauge")
    logger = _backend.get()
    if logger is not None:
        _safely(logger.gauge, stat, value, tags=tags)


def timing(name: str, seconds: float, **labels: object) -> None:
    stat, tags = _stat(name, labels, "timer")
    logger = _backend.get()
    if logger is not None:
        _safely(logger.timing, stat, max(0.0, seconds) * 1000.0, tags=tags)  # StatsD timers are milliseconds


def _safely(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # a full socket buffer, a resolver hiccup: a metric is not worth an error
        log.debug("airflow-ha metric not sent: %s", exc)
