"""Celery workers (real subprocesses) on the Redis Cluster broker."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from airflow_ha.broker import keys
from tests.harness.waiting import WaitTimeout, wait_until
from tests.unit.broker.test_keys import QUEUES

pytestmark = pytest.mark.integration
TASK = "brokerapp.record"


def test_round_trip_on_six_queues_covering_all_masters(harness, redis_cluster):
    masters = {redis_cluster.master_for_slot(keys.queue_slot(q)).port for q in QUEUES}
    assert len(masters) == 3, "the queue names must spread over all three masters"
    harness.start_worker(QUEUES, concurrency=4)
    app = harness.client()
    ids = []
    for i in range(60):
        queue = QUEUES[i % len(QUEUES)]
        ids.append(app.send_task(TASK, kwargs={"label": queue}, queue=queue, task_id=str(uuid.uuid4())).id)
    counts = harness.wait_done(ids)
    assert {counts[i] for i in ids} == {1}  # exactly once in the absence of failures
    by_queue = {e["queue"] for e in harness.events() if e["kind"] == "done"}
    assert by_queue == set(QUEUES)


def test_eta_and_countdown(harness):
    queue = f"eta-{uuid.uuid4().hex[:6]}"
    harness.start_worker([queue])
    app = harness.client()
    sent = time.time()
    a = app.send_task(TASK, kwargs={"label": "countdown", "sent": sent}, queue=queue, countdown=3)
    b = app.send_task(
        TASK, kwargs={"label": "eta", "sent": sent}, queue=queue, eta=datetime.now(UTC) + timedelta(seconds=4)
    )
    c = app.send_task(TASK, kwargs={"label": "now", "sent": sent}, queue=queue)
    harness.wait_done([a.id, b.id, c.id])
    started = {e["label"]: e["t"] for e in harness.events() if e["kind"] == "start"}
    # correctness of scheduling (not a performance bound): never before the requested time
    assert started["countdown"] >= sent + 3
    assert started["eta"] >= sent + 4
    assert started["now"] < started["countdown"]


def test_inspect_ping_broadcast_and_control_shutdown(harness):
    queue = f"ctl-{uuid.uuid4().hex[:6]}"
    w1 = harness.start_worker([queue], name="ctl-a")
    w2 = harness.start_worker([queue], name="ctl-b")
    app = harness.client()
    replies = {}
    for _ in range(5):  # the first ping can race the workers' pidbox subscription
        for reply in app.control.inspect(timeout=3).ping() or {}:
            replies.update({reply: True})
        if len(replies) == 2:
            break
    assert set(replies) == {"ctl-a@localhost", "ctl-b@localhost"}
    # a plain broadcast with replies
    stats = app.control.broadcast("ping", reply=True, timeout=3)
    assert {next(iter(r)) for r in stats} == {"ctl-a@localhost", "ctl-b@localhost"}
    # shutdown one worker by name: it exits, the other keeps answering
    app.control.shutdown(destination=["ctl-b@localhost"])
    w2.proc.wait(60)
    assert w1.proc.poll() is None
    assert list(app.control.inspect(timeout=3, destination=["ctl-a@localhost"]).ping() or {}) == ["ctl-a@localhost"]


def test_kill_9_worker_mid_task_with_acks_late_runs_the_task_again(harness):
    queue = f"crash-{uuid.uuid4().hex[:6]}"
    harness.transport_options = {"visibility_timeout": 3}
    first = harness.start_worker([queue], concurrency=1, name="doomed")
    app = harness.client()
    task = app.send_task(TASK, kwargs={"label": "crash", "sleep_once": 60}, queue=queue)
    try:
        wait_until(lambda: any(e["kind"] == "start" and e["id"] == task.id for e in harness.events()), 60, "the start")
    except WaitTimeout as exc:
        raise AssertionError(f"{exc}\n{first.log()[-3000:]}") from None
    first.kill9()  # mid-task: the task sleeps 60 s on its first run
    assert task.id not in harness.done_counts()
    harness.start_worker([queue], concurrency=1, name="survivor")
    counts = harness.wait_done([task.id], timeout=90)
    starts = [e for e in harness.events() if e["kind"] == "start" and e["id"] == task.id]
    assert len(starts) == 2 and counts[task.id] == 1
    assert starts[0]["pid"] != starts[1]["pid"]
