"""Session fixtures that start REAL servers on 127.0.0.1 (free ports, own data dirs) and stop them by PID.

A layer whose servers cannot run here skips with the reason instead of failing to collect.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import suite
from tests.harness.servers.debian_root import RootUnavailable
from tests.harness.servers.mysql import MySQL
from tests.harness.servers.process import ServerStartError
from tests.harness.servers.redis_cluster import RedisCluster, redis_bin_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def pytest_addoption(parser):
    parser.addoption(
        "--results-dir",
        default=os.environ.get("AIRFLOW_HA_RESULTS_DIR"),
        help="where the failover suites write results tables (default: the session's temporary directory; "
        "`--results-dir results` updates the recorded tables in the repository)",
    )


def pytest_collection_modifyitems(config, items):
    suite.skip_extended(config, items)


@pytest.fixture(scope="session")
def results_dir(request, tmp_path_factory) -> Path:
    """The folder a suite writes its results tables to: given, or temporary (a test run leaves the tree clean)."""
    given = request.config.getoption("--results-dir")
    return Path(given).resolve() if given else tmp_path_factory.mktemp("results")


def _unavailable(exc: Exception) -> None:
    """A server whose binaries cannot be had here: skip with the reason (in CI, where .ci/run provides
    root, debootstrap and the mirror, that is a broken pipeline: fail)."""
    if os.environ.get("CI"):
        pytest.fail(str(exc))
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def redis_bin() -> Path:
    """Redis 8 (Debian unstable root, or AIRFLOW_HA_REDIS_BIN_DIR), also first on PATH for this session so
    tests that start a plain ``redis-server`` by name run the same Redis."""
    try:
        bin_dir = redis_bin_dir()
    except ServerStartError as exc:  # RootUnavailable, or AIRFLOW_HA_REDIS_BIN_DIR without the binaries
        _unavailable(exc)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return bin_dir


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, redis_bin) -> RedisCluster:
    """6 redis-server processes (Redis 8) formed into 3 masters + 3 replicas, AUTH on."""
    cluster = RedisCluster(
        base_dir=tmp_path_factory.mktemp("redis-cluster"), password=secrets.token_hex(12), bin_dir=redis_bin
    )
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def mysql(tmp_path_factory) -> MySQL:
    """A MySQL 9.7 server (Debian unstable's mysqld, as in the chart's image) with an empty ``airflow`` database."""
    try:
        server = MySQL(base_dir=tmp_path_factory.mktemp("mysql"), password=secrets.token_hex(12))
    except RootUnavailable as exc:
        _unavailable(exc)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def airflow_env(airflow_home: Path, sql_alchemy_conn: str, **extra: str) -> dict[str, str]:
    """Environment for an Airflow CLI/process that uses the given home and metadata DB."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def airflow_db(mysql: MySQL, tmp_path_factory) -> dict[str, str]:
    """The MySQL fixture migrated with ``airflow db migrate``; returns the env to reach it."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = airflow_env(home, mysql.sqlalchemy_url)
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=900
    )
    if result.returncode != 0:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return env


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    helm = TOOLS_BIN / "helm"
    if not helm.is_file():
        pytest.fail(f"{helm} is missing: run `python tools/bootstrap.py` (tox does it for you)")
    return helm
