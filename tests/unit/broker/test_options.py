"""Transport option validation: defaults, conversion from strings, messages naming the option."""

from __future__ import annotations

import pytest

from airflow_ha.broker.errors import BrokerConfigError
from airflow_ha.broker.options import BrokerOptions


def test_defaults():
    opts = BrokerOptions.from_mapping({})
    assert opts.replication_wait_replicas == 1
    assert opts.replication_wait_policy == "warn"
    assert opts.wait_for("publish") == 1 and opts.wait_for("ack") == 1
    assert opts.sweep_interval == 60.0  # min(3600 / 4, 60)


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
