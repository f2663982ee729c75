"""Transport option validation: defaults, conversion from strings, messages naming the option."""

from __future__ import annotations

import pytest

from airflow_ha.broker.errors import BrokerConfigError
from airflow_ha.broker.options import BrokerOptions


def test_defaults():
    opts = BrokerOptions.from_mapping({})
    assert opts.replication_wait_replicas == 1
    assert opts.replication_wait_policy == "auto"  # the safe policy the chart uses, also the library's
    assert opts.wait_for("publish") == 1 and opts.wait_for("ack") == 0  # an ack lost only means a rerun
    assert opts.visibility_timeout == 86400  # Airflow's default for redis-like brokers
    assert opts.sweep_interval == 60.0  # min(86400 / 4, 60)


def test_strings_from_airflow_config_are_converted():
    opts = BrokerOptions.from_mapping(
        {
            "visibility_timeout": "8",
            "replication_wait_replicas": "0",
            "replication_wait_on": "publish",
            "priority_steps": "0,5",
            "replication_wait_policy": "RAISE",
            "unrelated_celery_option": "x",
        }
    )
    assert opts.visibility_timeout == 8.0
    assert opts.sweep_interval == 2.0
    assert opts.wait_for("publish") == 0
    assert opts.priority_steps == (0, 5)
    assert opts.replication_wait_policy == "raise"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"visibility_timeout": "soon"}, "visibility_timeout='soon'"),
        ({"visibility_timeout": 0}, "must be > 0"),
        ({"replication_wait_replicas": -1}, "0 disables WAIT"),
        ({"replication_wait_replicas": 1.5}, "want an integer"),
        ({"replication_wait_timeout_ms": 0}, "WAIT 0 would block forever"),
        ({"replication_wait_timeout_ms": 9000}, "below socket_timeout"),
        ({"replication_wait_policy": "ignore"}, "want one of warn, raise"),
        ({"replication_wait_on": "publish,get"}, "unknown \\['get'\\]"),
        ({"priority_steps": "3,6"}, "starting at 0"),
        ({"failover_timeout": -1}, "failover_timeout=-1.0"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(BrokerConfigError, match=message):
        BrokerOptions.from_mapping(options)


def test_policy_auto_is_accepted():
    assert BrokerOptions.from_mapping({"replication_wait_policy": "Auto"}).replication_wait_policy == "auto"


# -- one definition: the URL parser, the chart's schema and the README follow BrokerOptions ---------------
REPO = __import__("pathlib").Path(__file__).resolve().parents[3]


def test_every_option_is_accepted_in_the_url_and_reaches_the_options():
    from dataclasses import fields

    from airflow_ha.broker.options import defaults
    from airflow_ha.broker.url import parse

    values = {k: (",".join(map(str, v)) if isinstance(v, list) else v) for k, v in defaults().items()}
    query = "&".join(f"{k}={v}" for k, v in values.items() if v is not None)
    parsed = parse(f"rediscluster://h:1?{query}")
    assert set(parsed.options) == {f.name for f in fields(BrokerOptions) if values[f.name] is not None}
    assert BrokerOptions.merged(parsed.options, {}) == BrokerOptions()


def test_chart_schema_is_derived_from_broker_options():
    import json

    from airflow_ha.broker.options import json_schema

    schema = json.loads((REPO / "chart" / "values.schema.json").read_text())
    in_chart = schema["properties"]["broker"]["properties"]["transportOptions"]
    assert in_chart == json_schema(), "regenerate: python -m airflow_ha.broker.options schema"


def test_readme_option_table_is_derived_from_broker_options():
    from airflow_ha.broker.options import docs_table

    readme = (REPO / "README.md").read_text()
    start, end = "<!-- broker-options:start -->\n", "<!-- broker-options:end -->"
    assert start in readme and end in readme, "README lacks the broker option table markers"
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == docs_table(), "regenerate: python -m airflow_ha.broker.options table"


@pytest.mark.parametrize("policy", ["warn", "raise", "auto"])
def test_precedence_defaults_then_url_then_transport_options(policy):
    url = {"replication_wait_policy": policy, "visibility_timeout": "60"}
    assert BrokerOptions.merged(url, {}).replication_wait_policy == policy
    merged = BrokerOptions.merged(url, {"replication_wait_policy": "warn" if policy != "warn" else "raise"})
    assert merged.replication_wait_policy != policy and merged.visibility_timeout == 60
