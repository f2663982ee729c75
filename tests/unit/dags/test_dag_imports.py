"""Every file in dags/ imports into Airflow's DagBag without errors or cycles, and its DAGs are sane.

The files are listed when the tests are collected, so DAG files added later are covered without
touching this test. Files whose name starts with ``_`` are helper modules and need not define a DAG.

Airflow parses in a subprocess with its own AIRFLOW_HOME (a temporary directory) and no metadata
database beyond the sqlite file Airflow names by default, never created: parsing needs none, and
the subprocess keeps the parse out of this interpreter's modules and configuration. Airflow 3.3.2's
DagBag has no ``include_examples`` any more (examples are a bundle of their own): a DagBag on
``dags/`` parses only ``dags/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_ha.edw.catalogue import ENV_CATALOGUE, load_catalogue

REPO_ROOT = Path(__file__).resolve().parents[3]
DAGS = REPO_ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS.rglob("*.py") if "__pycache__" not in p.parts)

PARSE = r"""
import json, os, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization

def describe(bag):
    dags = {}
    for dag_id, dag in bag.dags.items():
        try:
            DagSerialization.serialize_dag(dag)  # what the dag-processor stores; fails on unserialisable args
            serialize_error = None
        except Exception as exc:
            serialize_error = repr(exc)
        try:
            dag.check_cycle()
            cycle_error = None
        except Exception as exc:
            cycle_error = repr(exc)
        dags[dag_id] = {
            "fileloc": os.path.realpath(dag.fileloc),
            "tags": sorted(dag.tags),
            "owner": dag.owner,
            "tasks": sorted(dag.task_dict),
            "edges": sorted([t.task_id, d] for t in dag.tasks for d in sorted(t.downstream_task_ids)),
            "timetable": type(dag.timetable).__name__,
            "cron": getattr(dag.timetable, "expression", None),
            "start_date": str(dag.start_date) if dag.start_date else None,
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
            "params": sorted(dag.params),
            "serialize_error": serialize_error,
            "cycle_error": cycle_error,
        }
    errors = {os.path.realpath(path): error for path, error in bag.import_errors.items()}
    return {"import_errors": errors, "dags": dags}

result = {"folder": describe(DagBag(sys.argv[1]))}
if len(sys.argv) > 2:  # the dynamic-DAG file again, with a broken catalogue
    os.environ[sys.argv[2]] = sys.argv[3]
    result["bad_catalogue"] = describe(DagBag(os.path.join(sys.argv[1], "edw_dynamic.py")))
print("RESULT " + json.dumps(result))
"""

BROKEN_CATALOGUE = """\
jobs:
  - name: edw.0000
    schedule: business_day
    tasks:
      - id: load
        sql: SELECT 1
  - name: edw.0001
    schedule: business_day
    upstreams: [edw.0000]
    tasks:
      - id: clear
        sql: DELETE FROM t
      - id: load
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("airflow-home")
    broken = home / "broken_catalogue.yaml"
    broken.write_text(BROKEN_CATALOGUE)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.pop(ENV_CATALOGUE, None)  # the shipped catalogue, whatever the caller's environment says
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'unused.db'}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(DAGS), ENV_CATALOGUE, str(broken)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    line = next((line for line in result.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert line is not None, (result.stdout + result.stderr)[-4000:]
    data = json.loads(line.removeprefix("RESULT "))
    data["broken_path"] = str(broken)
    return data


def dags_of(parsed: dict, path: Path) -> dict[str, dict]:
    real = os.path.realpath(path)
    return {dag_id: dag for dag_id, dag in parsed["folder"]["dags"].items() if dag["fileloc"] == real}


def test_dags_folder_has_dag_files():
    assert DAGS / "edw_dynamic.py" in DAG_FILES
    assert DAGS / "ha_probe.py" in DAG_FILES


@pytest.mark.parametrize("path", DAG_FILES, ids=[str(p.relative_to(DAGS)) for p in DAG_FILES])
def test_dag_file_imports_without_errors(parsed, path):
    errors = parsed["folder"]["import_errors"]
    assert os.path.realpath(path) not in errors, errors.get(os.path.realpath(path))
    if not path.name.startswith("_"):
        assert dags_of(parsed, path), f"{path.relative_to(REPO_ROOT)} defines no DAG"


def test_no_import_errors_anywhere(parsed):
    assert parsed["folder"]["import_errors"] == {}


@pytest.mark.parametrize("path", DAG_FILES, ids=[str(p.relative_to(DAGS)) for p in DAG_FILES])
def test_dags_are_sane(parsed, path):
    for dag_id, dag in dags_of(parsed, path).items():
        assert dag["cycle_error"] is None, f"{dag_id}: {dag['cycle_error']}"
        assert dag["serialize_error"] is None, f"{dag_id}: {dag['serialize_error']}"
        assert dag["tasks"], f"{dag_id} has no tasks"
        assert dag["tags"], f"{dag_id} has no tags"
        assert dag["owner"], f"{dag_id} has no owner"
        if dag["timetable"] != "NullTimetable":
            assert dag["start_date"], f"{dag_id} is scheduled but has no start_date"


def test_edw_dynamic_builds_one_dag_per_catalogue_job(parsed):
    catalogue = load_catalogue(DAGS / "catalogue" / "edw_jobs.yaml")
    dags = dags_of(parsed, DAGS / "edw_dynamic.py")
    assert sorted(dags) == sorted(job.dag_id for job in catalogue)
    for job in catalogue:
        dag = dags[job.dag_id]
        assert dag["tasks"] == ["catch_up", "check_upstreams"]
        assert dag["edges"] == [["check_upstreams", "catch_up"]]
        assert dag["cron"] == job.cron
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False
        assert dag["params"] == ["business_date", "rerun"]
        assert {"edw", "edw-dynamic"} <= set(dag["tags"])
        assert dag["owner"] == job.owner


def test_edw_sensor_dags_follow_the_catalogues_holidays(parsed):
    """The marker DAGs short-circuit on the catalogue's holidays before any sensor waits."""
    dags = dags_of(parsed, DAGS / "edw_sensors.py")
    assert len(dags) == 10
    for dag_id, dag in dags.items():
        assert "business_day" in dag["tasks"], dag_id
        firsts = {upstream for upstream, _ in dag["edges"]} - {downstream for _, downstream in dag["edges"]}
        assert firsts == {"business_day"}, (dag_id, dag["edges"])


def test_the_business_day_check_uses_the_catalogue_holidays(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("edw_sensors_under_test", DAGS / "edw_sensors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check = module.business_day.function
    assert check(ds="2026-12-24") is True  # Thursday
    assert check(ds="2026-12-25") is False  # Christmas, in the catalogue's TARGET2 holidays
    assert check(ds="2026-12-26") is False  # Saturday


def test_a_missing_marker_volume_fails_the_run_naming_the_values(monkeypatch, tmp_path):
    import importlib.util

    from airflow.sdk.exceptions import AirflowFailException

    def dag_module(marker_dir):
        monkeypatch.setenv("AIRFLOW_HA_MARKER_DIR", str(marker_dir))
        spec = importlib.util.spec_from_file_location("edw_sensors_markers", DAGS / "edw_sensors.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    assert dag_module(tmp_path).marker_volume.function() == str(tmp_path)
    with pytest.raises(AirflowFailException, match=r"no marker volume: .*/absent .*markers\.enabled=true"):
        dag_module(tmp_path / "absent").marker_volume.function()


def test_broken_catalogue_is_an_import_error_naming_file_and_key(parsed):
    bad = parsed["bad_catalogue"]
    assert bad["dags"] == {}
    [(path, error)] = bad["import_errors"].items()
    assert path == os.path.realpath(DAGS / "edw_dynamic.py")
    assert "CatalogueError" in error
    assert f"{parsed['broken_path']}: jobs[1].tasks[1].sql: missing (line 13)" in error, error


def test_the_demo_dags_share_one_sensor(parsed):
    """The seed's demo: three DAGs, one target, so one hashcode: one row and one poke per interval."""
    import importlib.util

    dags = dags_of(parsed, DAGS / "smart_sensor_demo.py")
    assert sorted(dags) == ["smart_sensor_demo_a", "smart_sensor_demo_b", "smart_sensor_demo_c"]
    spec = importlib.util.spec_from_file_location("smart_sensor_demo_under_test", DAGS / "smart_sensor_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    contexts = [getattr(module, d).get_task("wait_demo_ready").poke_context() for d in module.DEMO_DAGS]
    assert len({code for _, _, code in contexts}) == 1, contexts
    kind, target, _ = contexts[0]
    assert kind == "file" and target == {"path": f"{module.DEMO_DIR}/demo.ready.job"}
