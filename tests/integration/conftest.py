"""Fixtures shared by the integration suites."""

from __future__ import annotations

import pytest

from airflow_ha import metrics
from tests.conftest import _unavailable
from tests.harness.servers.process import ServerStartError
from tests.harness.servers.statsd_exporter import StatsdExporter


@pytest.fixture
def exporter(tmp_path, monkeypatch):
    """A real statsd_exporter with the chart's mapping file; this process's [metrics] point at it, as the
    chart points every Airflow pod's at <release>-statsd."""
    import airflow.configuration  # noqa: F401  (an Airflow process: metrics go where its [metrics] says)

    server = StatsdExporter(tmp_path / "statsd")
    try:
        server.start()
    except ServerStartError as exc:
        _unavailable(exc)
    for key, value in server.statsd_env().items():
        monkeypatch.setenv(key, value)
    metrics._backend.reset()
    try:
        yield server
    finally:
        metrics._backend.reset()
        server.stop()
