"""MariaDB stand-in fixes: MariaDB 10.11 runs the local tests in place of MySQL 8.

MariaDB accepts ``WITH ... SELECT`` but not ``WITH ... DELETE``, while SQLAlchemy renders a DELETE
that references a CTE that way on every MySQL-family dialect. Airflow's scheduler does so when it
orphans assets no DAG references any more, so on MariaDB the scheduler loop fails on every pass.
The replacement reads the orphaned (name, uri) pairs first and deletes them by value; it is only
used when the connected server is MariaDB, so MySQL 8 (what the chart deploys) runs Airflow's own code.
"""

from __future__ import annotations

from airflow_ha.compat.hooks import when_imported

BATCH = 500


def install() -> None:
    when_imported("airflow.jobs.scheduler_job_runner", _patch_scheduler)


def _patch_scheduler(module) -> None:
    runner = module.SchedulerJobRunner
    original = runner.__dict__["_orphan_unreferenced_assets"].__func__
    if getattr(original, "_airflow_ha_mariadb", False):
        return

    def _orphan_unreferenced_assets(assets_query, *, session):
        if not session.get_bind().dialect.is_mariadb:
            return original(assets_query, session=session)
        from airflow._shared.observability.metrics import stats
        from airflow.models.asset import AssetActive
        from sqlalchemy import delete, select, tuple_

        orphans = session.execute(select(assets_query.c.name, assets_query.c.uri)).all()
        deleted = 0
        for start in range(0, len(orphans), BATCH):
            chunk = orphans[start : start + BATCH]
            result = session.execute(
                delete(AssetActive).where(tuple_(AssetActive.name, AssetActive.uri).in_([tuple(r) for r in chunk]))
            )
            deleted += max(result.rowcount or 0, 0)
        stats.gauge("asset.orphaned", deleted)
        return None

    _orphan_unreferenced_assets._airflow_ha_mariadb = True
    runner._orphan_unreferenced_assets = staticmethod(_orphan_unreferenced_assets)
