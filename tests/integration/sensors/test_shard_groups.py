"""A smart-sensor shard group served by 2 triggerers survives a SIGKILL of one of them (issue 15).

Real Airflow processes (MySQL, a 3+3 Redis Cluster, api-server, a scheduler, one worker) and ONE shard
group run by 2 ``airflow-ha sensor-shard`` triggerers on the same queues, as the chart's per-group
Deployment runs them; [triggerer] triggerer_health_check_threshold is the chart's. 12 sensors wait on 4
markers. Measured and printed: pokes per interval per distinct target with both triggerers alive (was 1
with one process per shard: now up to 2, when a target's waiters sit in both processes), and the takeover
time: from the SIGKILL until the survivor holds every trigger and has poked every target for all of its
waiters. The killed triggerer is kept down meanwhile (a pod whose node is lost). Then the markers appear
and every sensor succeeds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from airflow_ha.sensors.status import StatusStore, client_for_url
from tests.harness.servers.airflow import sensor_shard_name
from tests.harness.waiting import wait_until
from tests.integration.sensors.topology import sensor_topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
DAG_ID = "shard_group"
TARGETS, WAITERS, POKE_INTERVAL = 4, 3, 5  # as in dags/shard_group.py
SENSORS = TARGETS * WAITERS
REPLICAS = [sensor_shard_name(0, r) for r in range(2)]


def chart_health_check_threshold() -> str:
    values = yaml.safe_load((REPO / "chart" / "values.yaml").read_text())
    return str(values["config"]["triggerer"]["triggerer_health_check_threshold"])


@pytest.fixture(scope="module")
def group(tmp_path_factory, redis_cluster, mysql):
    env = {
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": chart_health_check_threshold(),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "1800",
    }
    with sensor_topology(
        tmp_path_factory.mktemp("shard-group"),
        "shard_group.py",
        [DAG_ID],
        env,
        sensor_shards=1,  # one group: every sensor is on it
        sensor_replicas=2,
        worker_concurrency=8,
    ) as topology:
        yield topology


def _deferred(backend, run_id: str) -> int:
    rows = backend.sql(
        "SELECT COUNT(*) FROM task_instance ti JOIN `trigger` t ON ti.trigger_id = t.id"
        " WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.state = 'deferred' AND t.triggerer_id IS NOT NULL",
        (DAG_ID, run_id),
    )
    return int(rows[0][0])


def _holders(backend, run_id: str) -> dict[str, int]:
    """Triggerer instance -> waiting sensors it holds."""
    rows = backend.sql(
        "SELECT j.hostname, COUNT(*) FROM task_instance ti JOIN `trigger` t ON ti.trigger_id = t.id"
        " JOIN job j ON j.id = t.triggerer_id WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.state = 'deferred'"
        " GROUP BY j.hostname",
        (DAG_ID, run_id),
    )
    return {str(host): int(n) for host, n in rows}


def test_a_group_keeps_poking_when_one_of_its_triggerers_is_killed(group):
    backend, markers = group
    run_id = f"group-{int(time.time())}"
    backend.api.trigger(DAG_ID, run_id)
    wait_until(lambda: _deferred(backend, run_id) == SENSORS, 600, f"{SENSORS} sensors deferred and held", interval=2)
    store = StatusStore(client_for_url(backend.redis.url()))
    listing = backend.api.request("GET", "/airflow-ha/sensors.json").json()
    assert len(listing) == TARGETS and all(len(g["waiters"]) == WAITERS for g in listing), listing
    codes = [g["hashcode"] for g in listing]
    wait_until(lambda: len(store.read(codes)) == TARGETS, 60, "a status record for every target")

    # 1. Both triggerers alive: pokes per interval per distinct target (1 when one process holds all of
    #    a target's waiters, 2 when they are split over both).
    split = {g["hashcode"]: len({w["triggerer_id"] for w in g["waiters"]}) for g in listing}
    before = {code: int(r["pokes"]) for code, r in store.read(codes).items()}
    window = 6 * POKE_INTERVAL
    time.sleep(window)
    after = {code: int(r["pokes"]) for code, r in store.read(codes).items()}
    intervals = window / POKE_INTERVAL
    rates = {code: (after[code] - before[code]) / intervals for code in codes}
    print(
        f"\npokes per {POKE_INTERVAL} s interval per target with 2 triggerers: "
        + ", ".join(f"{rates[c]:.2f} ({split[c]} process(es) hold its {WAITERS} waiters)" for c in codes)
    )
    for code in codes:
        assert intervals - 1 <= after[code] - before[code] <= split[code] * (intervals + 1), (code, split, rates)

    # 2. SIGKILL the triggerer holding the most sensors, keep it down; the other takes them all over.
    holders = _holders(backend, run_id)
    killed = max(holders, key=holders.get)
    (survivor,) = set(REPLICAS) - {killed}
    print(f"triggerers hold {holders}; killing {killed}")
    backend.keep_down(killed)
    proc = backend.airflow.by_name(killed)
    killed_at = time.time()
    proc.kill()
    assert not proc.running

    def taken_over() -> bool:
        if _holders(backend, run_id) != {survivor: SENSORS}:
            return False
        records = store.read(codes)
        return len(records) == TARGETS and all(
            r.get("replica") == survivor and float(r["last_poke_at"]) > killed_at and int(r["waiters"]) == WAITERS
            for r in records.values()
        )

    wait_until(taken_over, 180, f"{survivor} holding and poking all {SENSORS} sensors", interval=0.5)
    takeover = time.time() - killed_at
    print(
        f"takeover: {takeover:.1f} s from SIGKILL of {killed} until {survivor} poked every target for all "
        f"{SENSORS} sensors ([triggerer] triggerer_health_check_threshold = {chart_health_check_threshold()} s)"
    )
    assert takeover < 120

    # 3. The markers appear after the kill: every sensor succeeds, poked by the survivor alone.
    for i in range(TARGETS):
        (markers / f"grp.{i:04d}.job").write_text("done\n")
    final = backend.api.wait_for_runs([(DAG_ID, run_id)], timeout=300)
    assert final == {(DAG_ID, run_id): "success"}, final
    states = {ti["task_id"]: ti["state"] for ti in backend.api.task_instances(DAG_ID, run_id)}
    assert len(states) == SENSORS and set(states.values()) == {"success"}, states
    backend.keep_down(killed, down=False)
