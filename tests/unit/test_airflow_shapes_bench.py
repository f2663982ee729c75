"""benchmarks/airflow_shapes.py: the DAGs it writes parse in Airflow as each shape needs them, the HA shape
gets the chart's own ``config:`` values, and its figures come out of task rows as described."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from benchmarks.airflow_shapes import SHAPES, chart_config_env, dag_source, parse, pct, seconds, summarise

REPO_ROOT = Path(__file__).resolve().parents[2]

PARSE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(sys.argv[1])
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tasks": len(dag.tasks),
        "types": sorted({type(t).__name__ for t in dag.tasks}),
        "deferrable": sorted({str(getattr(t, "deferrable", None)) for t in dag.tasks}),
        "paths": sorted({getattr(t, "filepath", "") for t in dag.tasks} - {""}),
        "edges": sorted([t.task_id, d] for t in dag.tasks for d in t.downstream_task_ids),
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
    }
print(json.dumps(out))
"""


def parsed(tmp_path: Path, shape: str, **sizes) -> dict:
    args = argparse.Namespace(**{"wide_tasks": 12, "chain_runs": 7, "sensors": 9, "targets": 4, **sizes})
    dags = tmp_path / shape
    dags.mkdir()
    (dags / "bench_dags.py").write_text(dag_source(args, SHAPES[shape], tmp_path / "markers"))
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(dags)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("shape", "sensor_type"), [("stock", "FileSensor"), ("ha", "SmartFileSensor")])
def test_each_shape_parses_its_three_dags(tmp_path, shape, sensor_type):
    out = parsed(tmp_path, shape)
    assert out["errors"] == {}
    dags = out["dags"]
    assert set(dags) == {"bench_wide", "bench_chain", "bench_sensors"}
    wide, chain, sensors = dags["bench_wide"], dags["bench_chain"], dags["bench_sensors"]
    assert (wide["tasks"], wide["edges"], wide["max_active_tasks"]) == (12, [], 12)  # all schedulable at once
    assert chain["tasks"] == 5
    assert chain["edges"] == [[f"step{i}", f"step{i + 1}"] for i in range(4)]
    assert chain["max_active_runs"] == 7  # every triggered run active at once
    assert sensors["types"] == [sensor_type]
    assert sensors["tasks"] == 9
    assert sensors["paths"] == [str(tmp_path / "markers" / f"target.{t:03d}") for t in range(4)]
    if shape == "stock":
        assert sensors["deferrable"] == ["True"]  # the triggerer, not a worker slot per sensor


def test_ha_shapes_run_the_charts_config_values():
    values = yaml.safe_load((REPO_ROOT / "chart" / "values.yaml").read_text())["config"]
    env = chart_config_env()
    assert env["AIRFLOW__CELERY__OPERATION_TIMEOUT"] == str(values["celery"]["operation_timeout"])
    assert env["AIRFLOW__TRIGGERER__QUEUES_ENABLED"] == "True"
    assert env["AIRFLOW__DATABASE__MAX_DB_RETRIES"] == str(values["database"]["max_db_retries"])
    # where pods find each other is the harness's on 127.0.0.1
    assert "AIRFLOW__CORE__HOSTNAME_CALLABLE" not in env
    assert "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT" not in env
    expected = sum(len(options) for options in values.values()) - 3
    assert len(env) == expected


def test_figures_come_from_the_task_rows():
    t0 = datetime(2026, 1, 1)
    result = {
        "ok": 4,
        "wall_s": 8.0,
        "queued_to_running": [1.0, 2.0, 3.0, 4.0],
        "to_success": [2.0, 4.0, 6.0, 8.0],
        "scheduler_cpu_s": 2.0,
        "machine_cpu_s": 10.0,
        "redis_commands": 100,
    }
    s = summarise(result)
    assert s["tasks/s"] == 0.5
    assert (s["q->run p50"], s["->success p99"]) == (3.0, 8.0)
    assert s["sched CPU s/1k"] == 500.0
    assert s["redis cmds/task"] == 25.0
    assert pct([], 50) is None
    # naive datetimes are UTC (the engine's session time zone), against a row's column or a time.time()
    assert seconds(t0 + timedelta(seconds=5), t0) == 5.0
    assert seconds(t0 + timedelta(seconds=5), t0.replace(tzinfo=UTC).timestamp() + 1) == 4.0
    assert seconds(None, t0) is None


def test_bad_arguments_are_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        parse(["--shapes=stock,hA"])
    assert "unknown shape or workload: hA" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--sensors=0"])
    assert "--sensors must be at least 1" in capsys.readouterr().err
    assert parse(["--quick"]).wide_tasks == 200
