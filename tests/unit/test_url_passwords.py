"""Passwords that go into connection URLs unencoded: refused with the cause, never echoed."""

from __future__ import annotations

from airflow_ha.url_passwords import unsafe_url_passwords


def test_generated_and_url_safe_passwords_pass():
    assert unsafe_url_passwords({"AIRFLOW_HA_DB_PASSWORD": "aZ09-._~", "AIRFLOW_HA_REDIS_PASSWORD": "x" * 32}) == []
    assert unsafe_url_passwords({}) == []  # not an Airflow pod of the chart


def test_a_password_with_url_characters_is_refused_naming_the_values_key_not_the_password():
    (problem,) = unsafe_url_passwords({"AIRFLOW_HA_DB_PASSWORD": "pa:ss@word", "AIRFLOW_HA_REDIS_PASSWORD": "ok"})
    assert problem.startswith("AIRFLOW_HA_DB_PASSWORD (from the Secret named by secrets.mysqlPassword")
    assert "2 character(s)" in problem and "':', '@'" in problem
    assert "pa:ss@word" not in problem


def test_an_empty_password_says_the_key_is_empty():
    (problem,) = unsafe_url_passwords({"AIRFLOW_HA_REDIS_PASSWORD": ""})
    assert (
        problem == "AIRFLOW_HA_REDIS_PASSWORD is empty: the Secret named by secrets.redisPassword, or "
        "broker.external.passwordSecret has no value at its key"
    )
