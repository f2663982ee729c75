"""Passwords that go into connection URLs unencoded: refused with the cause, never echoed."""

from __future__ import annotations

from airflow_ha.url_passwords import unsafe_embedded_secrets, unsafe_url_passwords


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


def test_git_credentials_that_would_break_the_connection_json_are_refused_unshown():
    env = {"AIRFLOW_HA_GIT_USERNAME": "ci-bot", "AIRFLOW_HA_GIT_TOKEN": 'ghp_abc"def\n'}
    (problem,) = unsafe_embedded_secrets(env)
    assert problem.startswith("AIRFLOW_HA_GIT_TOKEN (from the Secret named by dags.git.credentialsSecret")
    assert "trailing newline" in problem and "ghp_abc" not in problem
    assert unsafe_embedded_secrets({"AIRFLOW_HA_GIT_USERNAME": "x", "AIRFLOW_HA_GIT_TOKEN": "glpat-Ab_09.~:/@"}) == []


def test_the_embedded_check_covers_urls_and_json():
    env = {"AIRFLOW_HA_DB_PASSWORD": "a b", "AIRFLOW_HA_GIT_TOKEN": ""}
    problems = unsafe_embedded_secrets(env)
    assert [p.split()[0] for p in problems] == ["AIRFLOW_HA_DB_PASSWORD", "AIRFLOW_HA_GIT_TOKEN"]


def test_a_log_store_key_that_would_break_the_connection_json_is_refused_unshown():
    env = {"AIRFLOW_HA_LOG_STORE_ACCESS_KEY": "AKIAEXAMPLE", "AIRFLOW_HA_LOG_STORE_SECRET_KEY": 'wJalr\\XUtn"FEMI'}
    (problem,) = unsafe_embedded_secrets(env)
    assert problem.startswith("AIRFLOW_HA_LOG_STORE_SECRET_KEY (from the Secret named by secrets.logStoreSecretKey)")
    assert "wJalr" not in problem
    # AWS-style secret keys (letters, digits, + and /) go into JSON as they are
    ok = {"AIRFLOW_HA_LOG_STORE_ACCESS_KEY": "AKIAEXAMPLE", "AIRFLOW_HA_LOG_STORE_SECRET_KEY": "wJalrXUtn/K7MDENG+bPx"}
    assert unsafe_embedded_secrets(ok) == []
