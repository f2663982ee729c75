"""The chart's database.timeouts, through Airflow's own engine: a pooled connection whose server stops
answering (what a proxy pod on a powered-off node looks like: no RST, no reply) fails within the read timeout
and the next checkout reconnects, where the migration Job's connection (no read timeout) keeps waiting.

The URLs are the ones the chart renders into its Secret, pointed at the MySQL 9.7 fixture (host, port and
password swapped, the query with the timeouts kept). The server is frozen with SIGSTOP: the kernel still
ACKs, nothing answers, as for a dead network path.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from tests.chart.conftest import helm_template
from tests.conftest import airflow_env
from tests.harness.servers.process import freeze_process

pytestmark = pytest.mark.integration

READ, CONNECT = 4, 2  # seconds; small so the test is short (the chart's defaults: 20 and 5)

CLIENT = r"""
import sys, time
from sqlalchemy import text
from airflow import settings

def select_one():
    with settings.Session() as session:
        session.execute(text("SELECT 1"))

select_one()
print("ready", flush=True)
sys.stdin.readline()  # the server is frozen now
started = time.monotonic()
try:
    select_one()
    print(f"answered {time.monotonic() - started:.1f}", flush=True)
except Exception as exc:
    print(f"failed {time.monotonic() - started:.1f} {type(exc).__name__}: {str(exc)[:200]}", flush=True)
"""


def rendered_urls(helm_binary) -> dict[str, str]:
    text = helm_template(
        helm_binary,
        "--set",
        f"database.timeouts.readSeconds={READ}",
        "--set",
        f"database.timeouts.writeSeconds={READ}",
        "--set",
        f"database.timeouts.connectSeconds={CONNECT}",
    )
    env = {}  # what the scheduler's and the migration Job's containers get (their passwords are $(VAR)s)
    for obj in yaml.safe_load_all(text):
        if (
            obj
            and obj["kind"] in ("Deployment", "Job")
            and obj["metadata"]["name"].endswith(("-scheduler", "-migrate-db"))
        ):
            container = obj["spec"]["template"]["spec"]["containers"][0]
            env[obj["kind"]] = {e["name"]: e.get("value") for e in container["env"]}
    if set(env) != {"Deployment", "Job"}:
        raise AssertionError(f"the scheduler Deployment or the migration Job was not rendered: {sorted(env)}")
    return {
        "sql-alchemy-conn": env["Deployment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        "sql-alchemy-conn-async": env["Deployment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"],
        "sql-alchemy-conn-migrate": env["Job"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
    }


def at_fixture(url: str, mysql) -> str:
    """The rendered URL with the fixture's address and credentials; scheme, database and query kept."""
    parts = urlsplit(url)
    netloc = f"{mysql.user}:{mysql.password}@127.0.0.1:{mysql.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def outcome_while_frozen(mysql, url: str, home, wait: float) -> str:
    """Start a client on Airflow's engine, freeze the server, ask again: its line, or "" if none in `wait`."""
    env = airflow_env(home, url)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout.readline().strip() == "ready"
        freeze_process(mysql.proc.pid)
        try:
            client.stdin.write("\n")
            client.stdin.flush()
            ready, _, _ = select.select([client.stdout], [], [], wait)
            return client.stdout.readline().strip() if ready else ""
        finally:
            os.kill(mysql.proc.pid, signal.SIGCONT)
    finally:
        client.kill()
        client.wait(10)


def test_a_frozen_server_fails_the_query_within_the_read_timeout(mysql, helm_binary, tmp_path):
    urls = rendered_urls(helm_binary)
    assert f"read_timeout={READ}" in urls["sql-alchemy-conn"]
    line = outcome_while_frozen(mysql, at_fixture(urls["sql-alchemy-conn"], mysql), tmp_path, wait=READ + CONNECT + 15)
    print(f"\nchart's connection, server frozen: {line or 'no answer'}")
    assert line.startswith("failed"), line or "no answer within the read and connect timeouts + 15 s"
    seconds = float(line.split()[1])
    # the pool's pre-ping read times out, then its reconnect's handshake times out
    # (MariaDB Connector/C, which mysqlclient links in the image and here, does not retry a timed-out read)
    assert seconds <= READ + CONNECT + 3, line
    assert "2013" in line or "Lost connection" in line or "2002" in line or "2003" in line, line


def test_the_migration_connection_has_no_read_timeout(mysql, helm_binary, tmp_path):
    """The contrast, and the reason the Job gets its own URL: a long ALTER TABLE must not be cut off."""
    urls = rendered_urls(helm_binary)
    assert "read_timeout" not in urls["sql-alchemy-conn-migrate"]
    line = outcome_while_frozen(mysql, at_fixture(urls["sql-alchemy-conn-migrate"], mysql), tmp_path, wait=3 * READ + 8)
    print(f"\nmigration connection, server frozen: {line or f'still waiting after {3 * READ + 8} s'}")
    assert line == "", line


def test_the_async_engine_accepts_the_rendered_url(mysql, helm_binary, tmp_path):
    """aiomysql takes no read_timeout: the async URL carries only the connect timeout, and Airflow's async
    engine opens it."""
    urls = rendered_urls(helm_binary)
    async_url = at_fixture(urls["sql-alchemy-conn-async"], mysql)
    assert async_url.startswith("mysql+aiomysql://") and "read_timeout" not in async_url
    code = (
        "import asyncio\n"
        "from sqlalchemy import text\n"
        "from airflow import settings\n"
        "async def main():\n"
        "    async with settings.AsyncSession() as s:\n"
        "        print((await s.execute(text('SELECT 1'))).scalar())\n"
        "    await settings.async_engine.dispose()\n"
        "asyncio.run(main())\n"
    )
    env = airflow_env(
        tmp_path,
        at_fixture(urls["sql-alchemy-conn"], mysql),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=async_url,
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "1", (proc.stdout[-1000:], proc.stderr[-2000:])
