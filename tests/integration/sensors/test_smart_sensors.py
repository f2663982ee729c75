"""Smart sensors on real Airflow processes: MySQL, a 3+3 Redis Cluster broker, api-server, a
scheduler, ONE Celery worker with 4 slots, and 2 sensor-shard triggerers (``airflow-ha sensor-shard``).

50 sensor tasks in 5 DAGs wait on 10 upstream markers (5 waiters per marker, as in the seed's
``sensor_instance`` table). Asserted: all 50 defer although the worker has 4 slots, no pool slot is
held, the shards poke 10 targets per interval (not 50), the listing groups them by hashcode, a killed
shard's sensors resume, every task succeeds soon after its marker appears, and a timeout fails its task
naming the target.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from airflow_ha.sensors.status import StatusStore, client_for_url
from tests.harness.servers.airflow import sensor_shard_name
from tests.harness.waiting import wait_until
from tests.integration.sensors.topology import sensor_topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
FLEET_DAGS = [f"sensor_fleet_{i}" for i in range(5)]
MARKERS = [f"edw.{i:04d}" for i in range(10)]
POKE_INTERVAL = 5  # as in dags/sensor_fleet.py
SHARDS = 2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, redis_cluster, mysql):
    # 50 tasks through 4 slots queue for minutes on a busy 2-core machine: that is the point of the test,
    # not a stuck task (the failover suite's 60 s would fail them).
    env = {"AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800"}
    with sensor_topology(
        tmp_path_factory.mktemp("smart-sensors"),
        "sensor_fleet.py",
        [*FLEET_DAGS, "sensor_fleet_timeouts", "sensor_fleet_broken"],
        env,
        sensor_shards=SHARDS,
        sensor_replicas=1,  # one triggerer per shard: exactly one poke per target (test_shard_groups: 2 each)
        worker_concurrency=4,
    ) as topology:
        yield topology


def _states(backend, run_id: str) -> dict[str, int]:
    rows = backend.sql(
        "SELECT state, COUNT(*) FROM task_instance WHERE dag_id LIKE 'sensor\\_fleet\\_%%' AND run_id = %s "
        "GROUP BY state",
        (run_id,),
    )
    return {str(state): count for state, count in rows}


def _status(backend) -> StatusStore:
    return StatusStore(client_for_url(backend.redis.url()))


def _pokes(store: StatusStore) -> tuple[int, int]:
    counters = store.shard_counters([f"shard-{i}" for i in range(SHARDS)])
    return (
        sum(c.get("pokes:file", 0) for c in counters.values()),
        sum(c.get("batches:file", 0) for c in counters.values()),
    )


def test_fifty_sensors_share_ten_pokes_survive_a_shard_kill_and_succeed(fleet):
    backend, markers = fleet
    run_id = f"fleet-{int(time.time())}"
    for dag_id in FLEET_DAGS:
        backend.api.trigger(dag_id, run_id)

    # 1. All 50 defer through a worker with 4 slots: a waiting smart sensor holds no slot.
    started = time.monotonic()
    wait_until(lambda: _states(backend, run_id).get("deferred") == 50, 900, "50 sensors deferred", interval=2)
    print(f"\n50 sensors deferred {time.monotonic() - started:.1f} s after the runs were triggered (4 worker slots)")
    states = _states(backend, run_id)
    assert states.get("running", 0) == 0 and states.get("queued", 0) == 0, states
    pool = backend.api.request("GET", "/api/v2/pools/default_pool").json()
    assert pool["occupied_slots"] == 0 and pool["running_slots"] == 0, pool
    assert pool["deferred_slots"] == 50, pool
    queues = backend.sql("SELECT DISTINCT queue FROM `trigger` WHERE classpath LIKE 'airflow_ha.sensors.%%'")
    assert queues and all(q.startswith("sensor-v") for (q,) in queues), queues

    # 2. The listing: 10 hashcodes, 5 waiters each, from the CLI and from the UI plugin.
    listed = subprocess.run(
        ["airflow-ha", "sensors", "list", "--output", "json"],
        env=backend.airflow.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    groups = json.loads(listed.stdout)
    assert sorted(len(g["waiters"]) for g in groups) == [5] * 10, listed.stdout[-2000:]
    assert {Path(g["poke_context"]["path"]).name for g in groups} == {f"{m}.job" for m in MARKERS}
    page = backend.api.request("GET", "/airflow-ha/sensors.json").json()
    assert {g["hashcode"] for g in page} == {g["hashcode"] for g in groups}
    html = backend.api.request("GET", "/airflow-ha/sensors").text
    assert "50 task(s) on 10 target(s)" in html

    # 3. Pokes per interval: 10 targets, not 50 waiters; one directory listing per shard per interval.
    store = _status(backend)
    wait_until(lambda: all(g["last_result"] == "waiting" for g in _listing(backend)), 60, "status for every target")
    pokes_0, batches_0 = _pokes(store)
    window = 6 * POKE_INTERVAL
    time.sleep(window)
    pokes_1, batches_1 = _pokes(store)
    intervals = window / POKE_INTERVAL
    pokes_per_interval = (pokes_1 - pokes_0) / intervals
    print(
        f"pokes per {POKE_INTERVAL} s interval: {pokes_per_interval:.1f} for 50 waiting tasks on 10 targets; "
        f"directory listings per interval: {(batches_1 - batches_0) / intervals:.1f}"
    )
    assert 10 * (intervals - 1) <= pokes_1 - pokes_0 <= 10 * (intervals + 1)
    assert batches_1 - batches_0 <= SHARDS * (intervals + 1)
    records = store.read(g["hashcode"] for g in groups)
    assert sorted(int(r["waiters"]) for r in records.values()) == [5] * 10

    # 4. Kill shard 0 mid-wait; the supervisor restarts it (as a StatefulSet would) and it takes its
    #    triggers back once the dead triggerer's heartbeat is stale; nothing is lost.
    shard0_before = store.shard_counters(["shard-0"])["shard-0"].get("pokes:file", 0)
    killed_at = time.monotonic()
    backend.kill("sensor-shard", sensor_shard_name(0, 0))
    wait_until(
        lambda: store.shard_counters(["shard-0"])["shard-0"].get("pokes:file", 0) > shard0_before + 5,
        240,
        "shard 0 poking again after its restart",
        interval=1,
    )
    print(f"shard 0 killed: poking again after {time.monotonic() - killed_at:.1f} s")
    assert _states(backend, run_id).get("deferred") == 50

    # 5. The markers appear: every task ends soon after, without a worker round trip.
    created = time.time()
    for name in MARKERS:
        (markers / f"{name}.job").write_text("done\n")
    final = backend.api.wait_for_runs([(d, run_id) for d in FLEET_DAGS], timeout=300)
    assert set(final.values()) == {"success"}, final
    ends = backend.sql(
        "SELECT UNIX_TIMESTAMP(end_date) FROM task_instance WHERE dag_id LIKE 'sensor\\_fleet\\_%%' AND run_id = %s",
        (run_id,),
    )
    latencies = sorted(float(end) - created for (end,) in ends)
    print(f"marker -> task success: median {latencies[len(latencies) // 2]:.1f} s, max {latencies[-1]:.1f} s")
    assert len(latencies) == 50
    assert latencies[-1] < POKE_INTERVAL + 60


def _listing(backend) -> list[dict]:
    return backend.api.request("GET", "/airflow-ha/sensors.json").json()


def test_timeout_names_the_target_and_soft_fail_skips(fleet):
    backend, markers = fleet
    run_id = f"timeouts-{int(time.time())}"
    backend.api.trigger("sensor_fleet_timeouts", run_id)
    final = backend.api.wait_for_runs([("sensor_fleet_timeouts", run_id)], timeout=300)
    assert final == {("sensor_fleet_timeouts", run_id): "failed"}
    states = {ti["task_id"]: ti["state"] for ti in backend.api.task_instances("sensor_fleet_timeouts", run_id)}
    assert states == {"never_fails": "failed", "never_soft": "skipped"}
    log = backend.api.task_log("sensor_fleet_timeouts", run_id, "never_fails", try_number=1)
    assert f"file {markers}/edw.9999.job not ready after 20 s" in log, log[-3000:]
    assert "no edw.9999.job in" in log


def test_a_sensor_that_can_never_succeed_fails_at_once_with_the_cause(fleet):
    """A marker directory that is a file, a connection id nobody defined: the shard says so at its first
    poke and the task fails then, with the cause in its log, instead of waiting out its hour. The DAG's
    callbacks run for those failures and for a smart sensor that succeeded (it has an on_success_callback,
    so it succeeds on a worker: Airflow 3.3 runs none for a task the triggerer ends)."""
    backend, markers = fleet
    (Path(markers) / "not-a-directory").write_text("a file where the day's directory should be")
    (Path(markers) / "edw.ready.job").touch()
    run_id = f"broken-{int(time.time())}"
    started = time.monotonic()
    backend.api.trigger("sensor_fleet_broken", run_id)
    final = backend.api.wait_for_runs([("sensor_fleet_broken", run_id)], timeout=600)
    took = time.monotonic() - started
    assert final == {("sensor_fleet_broken", run_id): "failed"}
    states = {ti["task_id"]: ti["state"] for ti in backend.api.task_instances("sensor_fleet_broken", run_id)}
    assert states == {"marker_dir_is_a_file": "failed", "no_such_connection": "failed", "ready_at_once": "success"}
    log = backend.api.task_log("sensor_fleet_broken", run_id, "marker_dir_is_a_file", try_number=1)
    assert f"cannot be poked: {markers}/not-a-directory is not a directory" in log, log[-3000:]
    log = backend.api.task_log("sensor_fleet_broken", run_id, "no_such_connection", try_number=1)
    assert "cannot be poked: query on no_such_conn failed: connection 'no_such_conn' is not defined" in log, log[-3000:]
    callbacks = Path(markers) / "callbacks"
    expected = {"marker_dir_is_a_file.failure", "no_such_connection.failure", "ready_at_once.success"}

    def ran() -> bool:
        return callbacks.is_dir() and expected <= {p.name for p in callbacks.iterdir() if p.read_text() == run_id}

    wait_until(ran, 180, f"the callbacks {sorted(expected)}", interval=2)
    # the sensor list keeps them after they finished (airflow-ha sensors list --all, the UI page)
    shown = backend.api.request("GET", "/airflow-ha/sensors.json", params={"all": "true"}).json()
    finished = {f["task_id"]: f for f in shown["finished"] if f["run_id"] == run_id}
    assert {t: f["outcome"] for t, f in finished.items()} == {
        "marker_dir_is_a_file": "failed",
        "no_such_connection": "failed",
        "ready_at_once": "success",
    }, shown["finished"][:5]
    assert all(f["waited_seconds"] is not None and f["pokes"] >= 1 for f in finished.values()), finished
    assert finished["ready_at_once"]["detail"].startswith("found ")
    table = subprocess.run(
        ["airflow-ha", "sensors", "list", "--all"],
        env=backend.airflow.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert f"sensor_fleet_broken.no_such_connection run={run_id}" in table, table[-3000:]
    assert "connection 'no_such_conn' is not defined" in table, table[-3000:]
    print(f"\nboth impossible sensors failed {took:.0f} s after the trigger (timeout 3600 s); callbacks ran")
