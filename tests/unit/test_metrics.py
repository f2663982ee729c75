"""airflow_ha.metrics through Airflow's own StatsD logger, received on a real UDP socket."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from airflow_ha import metrics
from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.hub import PokeHub

REPO_ROOT = Path(__file__).resolve().parents[2]


class StatsdListener:
    """A UDP socket on 127.0.0.1 that collects StatsD lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []

    def collect(self, until=lambda lines: False, timeout: float = 3.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(self.lines):
            try:
                data = self.sock.recv(65535).decode()
            except TimeoutError:
                continue
            self.lines += [line for line in data.splitlines() if line]
        return self.lines

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd(monkeypatch):
    """Airflow's [metrics] pointed at a listener, as the chart configures it (statsd_on, host, port)."""
    from airflow.configuration import conf

    listener = StatsdListener()
    for key, value in {"statsd_on": "True", "statsd_host": "127.0.0.1", "statsd_port": str(listener.port)}.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key.upper()}", value)
    assert conf.getint("metrics", "statsd_port") == listener.port
    metrics._backend.reset()
    yield listener
    listener.close()
    metrics._backend.reset()


def test_counters_gauges_and_timers_reach_statsd_with_airflows_prefix_and_labels_as_segments(statsd):
    metrics.incr("broker.retries", error="ConnectionError")
    metrics.gauge("sensors.waiting", 3, shard="shard-0", pod="airflow-ha-sensor-shard-0-7d9f-x2k")
    metrics.timing("broker.publish", 0.0125)
    lines = statsd.collect(lambda lines: len(lines) >= 3)
    assert "airflow.airflow_ha.broker.retries.ConnectionError:1|c" in lines
    assert "airflow.airflow_ha.sensors.waiting.shard-0.airflow-ha-sensor-shard-0-7d9f-x2k:3|g" in lines
    (publish,) = [line for line in lines if line.startswith("airflow.airflow_ha.broker.publish:")]
    assert publish.endswith("|ms") and float(publish.split(":")[1].split("|")[0]) == pytest.approx(12.5)


def test_a_label_value_becomes_one_safe_segment(statsd):
    metrics.incr("broker.redelivered", queue="10.244.1.5:default/x")
    assert "airflow.airflow_ha.broker.redelivered.10_244_1_5_default_x:1|c" in statsd.collect(lambda ls: ls)


def test_an_undeclared_metric_or_wrong_labels_raise_naming_it():
    with pytest.raises(ValueError, match=r"'broker\.nonsense' is not a declared counter"):
        metrics.incr("broker.nonsense")
    with pytest.raises(ValueError, match=r"'sensors\.waiting' is not a declared counter"):
        metrics.incr("sensors.waiting", shard="s", pod="p")  # a gauge
    with pytest.raises(ValueError, match=r"'broker\.retries' takes labels \('error',\), got \('queue',\)"):
        metrics.incr("broker.retries", queue="q")


def test_prometheus_names_follow_the_exporter_conventions():
    assert metrics.BY_NAME["broker.master_changes"].prometheus == "airflow_ha_broker_master_changes_total"
    assert metrics.BY_NAME["broker.stall"].prometheus == "airflow_ha_broker_stall_seconds"
    assert metrics.BY_NAME["sensors.waiting"].prometheus == "airflow_ha_sensors_waiting"


def test_a_process_without_airflows_configuration_sends_nothing_and_does_not_load_it():
    """The broker benchmark and plain Celery on the transport: no Airflow import for a metric."""
    listener = StatsdListener()
    try:
        code = (
            "import sys; from airflow_ha import metrics; metrics.incr('broker.slot_map_refreshes');"
            "print('airflow.configuration' in sys.modules)"
        )
        env = {**os.environ, "AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_PORT": str(listener.port)}
        env["AIRFLOW__METRICS__STATSD_HOST"] = "127.0.0.1"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "False", out.stderr[-2000:]
        assert listener.collect(timeout=0.5) == []
    finally:
        listener.close()


def test_the_poke_hub_reports_waiting_sensors_targets_and_pokes(statsd, tmp_path):
    (tmp_path / "a.job").touch()

    async def wait_two():
        hub = PokeHub(shard="shard-1", replica="10.244.0.9")
        targets = [{"path": str(tmp_path / "a.job")}, {"path": str(tmp_path / "b.job")}]
        waits = [hub.wait_ready("file", t, hashcode("file", t), 0.2, timeout=1.0) for t in targets]
        results = await asyncio.gather(*waits)
        await asyncio.wait_for(hub._loop_task, 5)  # the loop ends once nothing waits
        return results

    ready, late = asyncio.run(wait_two())
    assert ready.ready and ready.ready_since is not None and not late.ready
    lines = statsd.collect(lambda ls: any(line.endswith(":0|g") and ".targets." in line for line in ls))
    pod = metrics.label(socket.gethostname())
    assert f"airflow.airflow_ha.sensors.waiting.shard-1.{pod}:2|g" in lines
    assert f"airflow.airflow_ha.sensors.targets.shard-1.{pod}:2|g" in lines
    assert f"airflow.airflow_ha.sensors.targets.shard-1.{pod}:0|g" in lines  # the last word: nothing waits here
    pokes = sum(int(line.split(":")[1].split("|")[0]) for line in lines if ".sensors.pokes.shard-1.file:" in line)
    assert pokes >= 3  # both targets once, the missing one again each 0.2 s until its 1 s timeout
    assert any(line.startswith("airflow.airflow_ha.sensors.poke.file:") and line.endswith("|ms") for line in lines)


def _chart_mappings() -> list[dict]:
    import yaml

    return yaml.safe_load((REPO_ROOT / "chart" / "files" / "statsd-mappings.yaml").read_text())["mappings"]


def test_the_charts_exporter_mapping_covers_every_metric_once_with_its_labels():
    """A metric added to METRICS without its mapping would reach Prometheus as one flat series per label
    value: this fails first."""
    ours = {m["match"]: m for m in _chart_mappings() if m["match"].startswith("airflow.airflow_ha.")}
    expected = {}
    for metric in metrics.METRICS:
        match = ".".join(["airflow", metrics.PREFIX, metric.name, *("*" for _ in metric.labels)])
        expected[match] = metric
    assert sorted(ours) == sorted(expected)
    for match, metric in expected.items():
        mapping = ours[match]
        assert mapping["name"] == metric.prometheus, match
        assert mapping.get("labels", {}) == {name: f"${i}" for i, name in enumerate(metric.labels, 1)}, match


def test_the_readme_documents_every_metric():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Metrics", 1)[1].split("\n## ", 1)[0]
    for metric in metrics.METRICS:
        row = next((line for line in section.splitlines() if line.startswith(f"| `{metric.prometheus}`")), None)
        assert row is not None, f"{metric.prometheus} is not in the README's Metrics table"
        for name in metric.labels:
            assert name in row, f"{metric.prometheus}: label {name} not in its README row"
