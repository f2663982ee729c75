"""``airflow-ha wait-for-migrations``: wait until the metadata database is at this Airflow's schema head,
without holding a lock that stops the migration it waits for.

Every Airflow pod waits for the migration Job in an init container. ``airflow db check-migrations`` polls
on ONE connection inside one transaction for its whole wait (Airflow 3.3.2, ``utils/db.py``
``check_migrations``; Airflow also forces ``READ COMMITTED`` on MySQL, so autocommit cannot be configured
around it). On MySQL the first poll's ``DESCRIBE alembic_version`` leaves a metadata lock that the open
transaction keeps, and the migration Job's ``CREATE TABLE alembic_version`` then waits for every polling
pod: a fresh install whose pods start polling before the schema exists never completes (seen on the
3-node cluster with a Group Replication database, which takes longer to come up than one pod). Here each
poll runs on a connection whose transaction ends right after it, so the lock goes with it.
"""

from __future__ import annotations

import sys
import time

from airflow_ha.url_passwords import unsafe_embedded_secrets


def source_heads() -> set[str]:
    """Heads of this Airflow's migration scripts (fixed for the process: read once)."""
    from airflow.utils.db import _get_alembic_config
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_get_alembic_config()).get_heads())


def database_heads() -> set[str]:
    """Heads recorded in the database, in one short transaction."""
    from airflow import settings
    from alembic.runtime.migration import MigrationContext

    with settings.get_engine().connect() as conn:  # leaving the block ends the transaction: no lock kept
        heads = set(MigrationContext.configure(conn).get_current_heads())
        conn.rollback()
    return heads


def wait(timeout: float, interval: float = 2.0, out=print) -> None:
    """Return once the schema is current (Airflow's own check of external DB managers included); raise
    TimeoutError naming both heads after ``timeout`` seconds."""
    from airflow import settings
    from airflow.utils.db_manager import RunDBManager

    deadline = time.monotonic() + timeout
    source, database = source_heads(), None
    while True:
        try:
            database = database_heads()
        except Exception as exc:  # the database not reachable yet: keep waiting, say why
            out(f"wait-for-migrations: database not ready ({type(exc).__name__}: {exc})")
        else:
            if source == database:
                session = settings.Session()
                try:
                    if RunDBManager().check_migration(session):
                        return
                finally:
                    session.close()
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"migrations not applied after {timeout:g}s: database heads {database}, this Airflow's {source}"
            )
        time.sleep(interval)


def run(args) -> int:
    started = time.monotonic()
    problems = unsafe_embedded_secrets()
    if problems:
        for problem in problems:
            print(f"wait-for-migrations: {problem}", file=sys.stderr)
        return 2
    try:
        wait(args.timeout)
    except TimeoutError as exc:
        print(f"wait-for-migrations: {exc}", file=sys.stderr)
        return 1
    print(f"wait-for-migrations: schema current after {time.monotonic() - started:.0f}s")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("wait-for-migrations", help=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    parser.set_defaults(func=run)
