"""The triggerers: liveness, queues."""

from __future__ import annotations

import pytest

from tests.chart.components import R, pod

pytestmark = pytest.mark.chart


def test_triggerers_liveness(default):
    for name in (f"{R}-triggerer", f"{R}-triggerer-default"):
        c = pod(default, "Deployment", name)["containers"][0]
        assert c["livenessProbe"]["exec"]["command"] == [
            "airflow",
            "jobs",
            "check",
            "--job-type",
            "TriggererJob",
            "--local",
        ]


def test_triggerer_queues_configurable(render):
    rendered = render(None, "triggerer.queues={default,sensors}")
    c = pod(rendered, "Deployment", f"{R}-triggerer-sensors")["containers"][0]
    assert c["args"] == ["airflow", "triggerer", "--queues", "sensors"]
