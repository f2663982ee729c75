"""Metrics as an operator sees them: Debian's Prometheus, beside the cluster, scrapes the release's
statsd-exporter (through ``kubectl port-forward svc/<release>-statsd 9102``, every second) while a Redis
master pod is killed under Airflow's own publishing and the sensor-shard pod holding a DAG run's smart
sensors is deleted. The failover and the takeover must show in the series Prometheus stored, every query of
the chart's Grafana dashboard must run on them, and the dashboard drawn from them is written to the results
folder (``metrics-failover.png``)."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.conftest import _unavailable
from tests.harness.failover import scenarios
from tests.harness.failover.kubernetes import PortForward
from tests.harness.servers.process import ServerStartError
from tests.harness.servers.prometheus import Prometheus
from tests.harness.waiting import wait_until
from tests.k8s.conftest import KUBECTL, REPO_ROOT, probe_backend, record

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(1800)]

SERIES: dict[str, tuple[float, float]] = {}  # what the plot shows: name -> (start, end) of its event
DASHBOARD = REPO_ROOT / "chart" / "files" / "grafana-dashboard.json"


@pytest.fixture(scope="module")
def backend(kube, release):
    with probe_backend(kube, release) as backend:
        backend.api.unpause(scenarios.SENSOR_PROBE_DAG)
        yield backend


@pytest.fixture(scope="module")
def prometheus(kube, release, tmp_path_factory, results_dir):
    statsd = f"svc/{release.name}-statsd"
    named = f"metadata.name={release.name}-statsd"
    if not kube.core.list_namespaced_service(release.namespace, field_selector=named).items:
        pytest.skip(f"the release has no {statsd} (metrics.enabled is off)")
    forward = PortForward(KUBECTL, release.namespace, lambda: statsd, 9102)
    host, port = forward.address()
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), targets=[f"{host}:{port}"])
    try:
        server.start()
    except ServerStartError as exc:
        _unavailable(exc)
    try:
        scraping = lambda: server.scalar('up{job="airflow-ha"}') == 1  # noqa: E731
        wait_until(scraping, 60, "Prometheus scraping the exporter", interval=1)
        yield server
        _plot(server, results_dir)
    finally:
        server.stop()
        forward.close()


def test_airflows_own_metrics_reach_prometheus(prometheus, backend):
    """Airflow's StatsD through the chart's mapping: the schedulers' heartbeats, task finishes by DAG."""
    run = backend.api.trigger(scenarios.PROBE_DAG, f"metrics-{int(time.time())}", conf={"seconds": 0.2})
    assert backend.api.wait_for_runs([(scenarios.PROBE_DAG, run)], 600)[(scenarios.PROBE_DAG, run)] == "success"
    finished = wait_until(
        lambda: prometheus.scalar(f'sum(airflow_ti_finish_total{{dag_id="{scenarios.PROBE_DAG}",state="success"}})'),
        60,
        "ha_probe task finishes in Prometheus",
        interval=1,
    )
    assert prometheus.scalar("sum(rate(airflow_scheduler_heartbeat_total[30s]))") > 0
    record("Airflow metrics in Prometheus", f"{finished:.0f} ha_probe task finishes counted, schedulers heartbeating")


def test_a_redis_master_failover_is_in_the_broker_series(prometheus, backend):
    """The killed master's slots fail Airflow's publishes and consumes until its replica is promoted (or the pod
    is back first, on its AOF): the processes that met it reload the slot map and retry (a worker's failed wait
    too: stop 30's CI had only those, and they were not counted; or the WAIT policy refuses a publish Celery then
    retries), and a promotion is also counted as a master change."""
    queries = {
        "refreshes": "sum(airflow_ha_broker_slot_map_refreshes_total)",
        "retries": "sum(airflow_ha_broker_retries_total)",
        "refused": "sum(airflow_ha_broker_wait_refusals_total)",
        "stalls": "sum(airflow_ha_broker_stall_seconds_count)",
        "changes": "sum(airflow_ha_broker_master_changes_total)",
    }
    before = {k: prometheus.scalar(q) for k, q in queries.items()}
    workload = scenarios.Workload(backend, "metrics-redis", seconds=0.5)
    workload.trigger(2)
    wait_until(lambda: workload.succeeded(workload.runs) > 0, 300, "probe tasks flowing before the kill", interval=2)
    victim = backend.redis_master_for_queue("default")
    killed = time.time()
    backend.kill("redis", victim)
    serving = backend.wait_redis_serving(victim, 180)
    workload.trigger(1)  # published through whichever master serves the slot now
    states = backend.api.wait_for_runs([(scenarios.PROBE_DAG, r) for r in workload.runs], 900)
    assert set(states.values()) == {"success"}, states
    promoted = serving != victim
    delta: dict[str, float] = {}

    def seen() -> bool:
        delta.update({k: prometheus.scalar(q) - before[k] for k, q in queries.items()})
        met = delta["refreshes"] > 0 and delta["retries"] + delta["refused"] > 0
        return met and (delta["changes"] > 0 or not promoted)

    what = "slot-map reloads with retried or refused commands" + (" and a master change" if promoted else "")
    wait_until(seen, 120, f"{what} in the series", interval=2, explain=lambda: f"increase since the kill: {delta}")
    seen_after = time.time() - killed
    retries = prometheus.query("sum by (error) (increase(airflow_ha_broker_retries_total[10m]))")
    by_error = ", ".join(f"{metric.get('error', '?')}: {value:.0f}" for metric, value in retries if value) or "none"
    SERIES["redis master killed"] = (killed, time.time())
    record(
        "Redis failover in Prometheus",
        f"killed {victim} ({f'replica {serving} promoted' if promoted else 'its pod was back first, on its AOF'}); "
        f"increase: {delta['refreshes']:.0f} slot-map reloads, {delta['retries']:.0f} retries ({by_error}), "
        f"{delta['refused']:.0f} publishes refused by the WAIT policy (Celery retried them), {delta['stalls']:.0f} "
        f"stalled commands completed, {delta['changes']:.0f} master changes; read {seen_after:.0f} s after the "
        "kill, once every run had succeeded (scraped every 1 s)",
    )


def test_a_lost_shard_pod_and_its_takeover_are_in_the_sensor_series(prometheus, backend):
    workload = scenarios.Workload(
        backend, "metrics-shard", seconds=0.0, dag_id=scenarios.SENSOR_PROBE_DAG, task_pattern="wait\\_%",
        tasks_per_run=scenarios.SENSORS_PER_RUN,
    )  # fmt: skip
    waiting = "airflow_ha_sensors_waiting"
    # what waits already (an earlier test's sensors): this test counts what its own run adds and takes away
    before = prometheus.scalar(f"sum({waiting})")
    (run,) = workload.trigger(1)
    wait_until(
        lambda: prometheus.scalar(f"sum({waiting})") >= before + scenarios.SENSORS_PER_RUN,
        300,
        f"{scenarios.SENSORS_PER_RUN} more waiting sensors in airflow_ha_sensors_waiting (there were {before:.0f})",
        interval=2,
    )
    holders = {m["pod"]: (m["shard"], v) for m, v in prometheus.query(f"{waiting} > 0")}
    pod, (shard, held) = max(holders.items(), key=lambda item: item[1][1])
    killed = time.time()
    backend.kill("sensor-shard", pod)

    def taken_over() -> float | None:
        """What the group's other pods hold, once the killed pod's series is gone (the exporter drops a
        silent pod's gauge after its 10 s ttl)."""
        series = {m["pod"]: v for m, v in prometheus.query(f'airflow_ha_sensors_waiting{{shard="{shard}"}}')}
        others = sum(v for p, v in series.items() if p != pod)
        return others if pod not in series and others >= held else None

    holding = wait_until(taken_over, 300, f"{shard}'s other pods to hold {pod}'s {held:.0f} sensors", interval=2)
    takeover = time.time() - killed
    backend.api.set_variable(f"{scenarios.SENSOR_RELEASE_PREFIX}/{run}", "go")
    states = backend.api.wait_for_runs([(scenarios.SENSOR_PROBE_DAG, run)], 600)
    assert set(states.values()) == {"success"}, states
    wait_until(
        lambda: prometheus.scalar(f"sum({waiting})") <= before,
        120,
        f"the run's sensors gone from the series (back to the {before:.0f} waiting before it)",
        interval=2,
    )
    SERIES["sensor-shard pod deleted"] = (killed, time.time())
    record(
        "sensor-shard loss in Prometheus",
        f"deleted {pod} holding {held:.0f} of {scenarios.SENSORS_PER_RUN} sensors ({shard}); the group's other "
        f"pod showed {holding:.0f} waiting {takeover:.0f} s later (threshold 20 s; the exporter drops a silent "
        "pod's gauge after 10 s), then all succeeded",
    )


def dashboard_queries(rate_interval: str = "15s") -> list[tuple[str, list[tuple[str, str]]]]:
    """(panel title, [(PromQL, legend format)]) of every graph of the chart's Grafana dashboard, with Grafana's
    $__rate_interval given a value."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (p["title"], [(t["expr"].replace("$__rate_interval", rate_interval), t["legendFormat"]) for t in p["targets"]])
        for p in dashboard["panels"]
        if p["type"] != "row"
    ]


def test_every_dashboard_query_runs_on_the_stored_series(prometheus, backend):
    """The chart's Grafana dashboard, query by query, on what Prometheus stored: none is an error, and the
    graphs of the failover and the takeover have data (this module's tests ran before)."""
    end = time.time()
    empty = []
    for title, targets in dashboard_queries():
        series = [s for expr, _legend in targets for s in prometheus.range(expr, end - 1800, end, step=15)]
        if not series:
            empty.append(title)
    musts = ("Slot-map reloads per second", "Task instances finished, by state", "Task scheduled to queued (p99)")
    for must in (*musts, "Sensors waiting, by pod"):
        assert must not in empty, f"no data for {must!r} (empty: {empty})"
    graphs = len(dashboard_queries())
    record("grafana dashboard", f"{graphs} graphs queried; without data in this run: {empty or 'none'}")


def _plot(prometheus: Prometheus, results_dir) -> None:
    """metrics-failover.png: the chart's Grafana dashboard drawn with matplotlib (no Grafana runs here) over the
    window of this module's events, each event marked (needs matplotlib, a dev dependency)."""
    if not SERIES:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        record("metrics plot", "skipped: matplotlib is not installed")
        return
    start = min(s for s, _ in SERIES.values()) - 60
    end = max(e for _, e in SERIES.values()) + 10
    panels = dashboard_queries()
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(14, 2.3 * rows), sharex=True)
    flat = list(axes.flat)
    for ax, (title, targets) in zip(flat, panels, strict=False):
        for expr, legend in targets:
            for metric, values in prometheus.range(expr, start, end, step=2):
                name = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m, metric=metric: metric.get(m.group(1), ""), legend)
                ax.plot([t - start for t, _ in values], [v for _, v in values], label=name)
        for name, (t0, _t1) in SERIES.items():
            ax.axvline(t0 - start, color="red", linestyle="--", linewidth=1)
            if ax is flat[0]:
                ax.annotate(name, (t0 - start, 0), rotation=90, fontsize=7, color="red", va="bottom")
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax in flat[-2:]:
        ax.set_xlabel("seconds")
    fig.tight_layout()
    results_dir.mkdir(parents=True, exist_ok=True)
    out = results_dir / "metrics-failover.png"
    fig.savefig(out, dpi=80)
    record("metrics plot", str(out))
