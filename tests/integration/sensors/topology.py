"""The local topology the smart-sensor tests run on: real Airflow processes, one test DAG, a marker dir."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.failover.local import LocalBackend
from tests.harness.waiting import wait_until

REPO = Path(__file__).resolve().parents[3]
DAGS = Path(__file__).parent / "dags"


@contextmanager
def sensor_topology(
    base: Path, dag_file: str, dag_ids: list[str], env: dict[str, str] | None = None, **backend_args
) -> Iterator[tuple[LocalBackend, Path]]:
    """Start the topology with ``dags/ha_probe.py`` and ``dag_file``, unpause ``dag_ids``; yield it and the
    marker directory the DAGs wait on (AIRFLOW_HA_TEST_MARKER_DIR); stop everything after."""
    dags = base / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "ha_probe.py", dags)
    shutil.copy(DAGS / dag_file, dags)
    markers = base / "markers"
    markers.mkdir()
    backend = LocalBackend(
        base,
        dags,
        broker_url_for=lambda cluster: cluster.url(),
        schedulers=1,
        workers=1,
        extra_env={"AIRFLOW_HA_TEST_MARKER_DIR": str(markers), **(env or {})},
        **backend_args,
    )
    try:
        backend.up()
        wait_until(lambda: set(dag_ids) <= backend.api.dag_ids(), 180, f"{dag_ids} to be parsed", interval=2)
        for dag_id in dag_ids:
            backend.api.unpause(dag_id)
        yield backend, markers
    finally:
        backend.down()
