"""The broker options a user sets in the chart are the ones Airflow's own Celery app runs with.

The chart writes ``broker.transportOptions`` into the broker URL's query; the release's pods build
Airflow's Celery app from ``[celery] broker_url`` and ``celery_config_options``. These tests take the URL
from the rendered Secret and the config module from the rendered pod env, build Airflow's app from them in a
fresh interpreter (tests/unit/broker/test_celery_config.py) and read the options the transport resolves.
"""

from __future__ import annotations

import pytest

from tests.chart.components import pod, pod_url
from tests.chart.conftest import RELEASE as R
from tests.chart.conftest import RenderError, container, env_of
from tests.unit.broker.test_celery_config import load


def _effective(rendered, tmp_path, **env) -> dict:
    url = pod_url(rendered, "AIRFLOW__CELERY__BROKER_URL")
    scheduler_env = env_of(container(pod(rendered, "Deployment", f"{R}-scheduler"), "scheduler"))
    config_module = scheduler_env["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]["value"]
    return load(tmp_path, url, AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=config_module, **env)["effective"]


def test_chart_defaults_reach_airflows_celery_app(default, tmp_path):
    effective = _effective(default, tmp_path)
    assert effective["replication_wait_policy"] == "auto"
    assert effective["replication_wait_replicas"] == 1


def test_every_kind_of_value_reaches_airflows_celery_app(render, tmp_path):
    rendered = render(
        None,
        "broker.transportOptions.replication_wait_policy=raise",
        "broker.transportOptions.poll_sweep_interval=2",
        "broker.transportOptions.replication_wait_on={publish}",
        "broker.transportOptions.replication_wait_aof=false",
        "broker.transportOptions.visibility_timeout=7200",
    )
    effective = _effective(rendered, tmp_path)
    assert effective["replication_wait_policy"] == "raise"
    assert effective["poll_sweep_interval"] == 2
    assert effective["replication_wait_on"] == ["publish"]
    assert effective["replication_wait_aof"] is False
    assert effective["visibility_timeout"] == 7200
    # what a user sets in Airflow itself still wins over the chart's URL
    user = _effective(rendered, tmp_path, AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__REPLICATION_WAIT_POLICY="warn")
    assert user["replication_wait_policy"] == "warn"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("broker.transportOptions.replication_wait_policy=maybe", "replication_wait_policy"),
        ("broker.transportOptions.poll_sweep_interval=0", "poll_sweep_interval"),
        ("broker.transportOptions.no_such_option=1", "no_such_option"),
        ("redis.appendfsync=sometimes", "appendfsync"),
    ],
)
def test_bad_broker_values_fail_the_schema(render, option, message):
    with pytest.raises(RenderError) as err:
        render(None, option)
    assert message in err.value.stderr
