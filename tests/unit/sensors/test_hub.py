"""The hub in one event loop, as in a shard's triggerer: shared pokes, batching, release, cancellation."""

import asyncio
import os
import threading
from collections import Counter

from airflow_ha.sensors.hashcode import hashcode
from airflow_ha.sensors.hub import PokeHub
from airflow_ha.sensors.pokers import FilePoker, PokeResult


def _targets(tmp_path, n_dirs=2, per_dir=5):
    poker = FilePoker()
    return [
        poker.validate({"path": str(tmp_path / f"d{d}" / f"edw.{d}{i:03d}.job")})
        for d in range(n_dirs)
        for i in range(per_dir)
    ]


def test_fifty_waiters_on_ten_targets_poke_ten_per_interval(tmp_path):
    targets = _targets(tmp_path)  # 10 targets in 2 directories
    for d in range(2):
        (tmp_path / f"d{d}").mkdir()

    async def scenario():
        hub = PokeHub(status=None, shard="test")
        waits = [
            asyncio.create_task(hub.wait_ready("file", t, hashcode("file", t), 0.2))
            for _ in range(5)
            for t in targets  # 5 tasks wait on each target, as in the seed's sensor_instance duplicates
        ]
        # no fixed sleep: wait until every target was poked twice, however slow the machine
        deadline = asyncio.get_running_loop().time() + 10
        while len(hub.entries) < 10 or min(e.pokes for e in hub.entries.values()) < 2:
            assert asyncio.get_running_loop().time() < deadline, "targets not poked twice within 10 s"
            await asyncio.sleep(0.05)
        entries = list(hub.entries.values())
        assert len(entries) == 10 and {e.waiters for e in entries} == {5}
        per_target = [e.pokes for e in entries]
        # one poke per target per interval, not one per waiter (that would be 5 per interval per target)
        assert hub.pokes["file"] == sum(per_target) and max(per_target) - min(per_target) <= 1
        # one listing per directory per interval (a round split by a tick boundary while the 50 waits were
        # being created adds one listing per directory, once)
        assert 2 * min(per_target) <= hub.batches["file"] <= 2 * (max(per_target) + 1)
        assert not any(w.done() for w in waits)
        for t in targets:
            open(t["path"], "w").close()
        results = await asyncio.wait_for(asyncio.gather(*waits), timeout=5)
        assert all(r.ready for r in results)
        await asyncio.sleep(0.1)
        assert hub.entries == {}  # released waiters leave no entry behind

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_others_waiting(tmp_path):
    [target] = _targets(tmp_path, 1, 1)
    code = hashcode("file", target)

    async def scenario():
        hub = PokeHub(status=None, shard="test")
        a = asyncio.create_task(hub.wait_ready("file", target, code, 0.2))
        b = asyncio.create_task(hub.wait_ready("file", target, code, 5.0))
        await asyncio.sleep(0.3)
        assert hub.entries[code].interval == 0.2 and hub.entries[code].waiters == 2
        a.cancel()
        await asyncio.sleep(0.05)
        assert hub.entries[code].waiters == 1 and hub.entries[code].interval == 5.0
        b.cancel()
        await asyncio.sleep(0.05)
        assert code not in hub.entries

    asyncio.run(scenario())


def test_a_failing_poker_is_reported_and_retried(tmp_path, monkeypatch):
    [target] = _targets(tmp_path, 1, 1)
    calls = []

    def flaky(self, targets):
        calls.append(len(targets))
        if len(calls) == 1:
            raise OSError("disk on fire")
        return [PokeResult(True, "ok") for _ in targets]

    monkeypatch.setattr(FilePoker, "poke_batch", flaky)

    async def scenario():
        hub = PokeHub(status=None, shard="test")
        result = await asyncio.wait_for(hub.wait_ready("file", target, hashcode("file", target), 0.2), timeout=3)
        assert result.ready and len(calls) == 2

    asyncio.run(scenario())


def test_timeout_returns_the_last_poke_result(tmp_path):
    [target] = _targets(tmp_path, 1, 1)

    async def scenario():
        hub = PokeHub(status=None, shard="test")
        result = await hub.wait_ready("file", target, hashcode("file", target), 0.2, timeout=0.5)
        assert not result.ready and "does not exist" in result.detail
        assert hub.entries == {}
        never = await hub.wait_ready("file", target, hashcode("file", target), 0.2, timeout=0)
        assert not never.ready

    asyncio.run(scenario())


def test_a_deadline_that_passed_while_the_shard_was_away_still_gets_one_poke(tmp_path):
    """A shard that comes back after a sensor's deadline pokes before it judges the timeout (as Airflow
    2.2's smart sensor did): a marker written meanwhile is a success, not a timeout."""
    [target] = _targets(tmp_path, 1, 1)
    (tmp_path / "d0").mkdir()
    open(target["path"], "w").close()

    async def scenario():
        hub = PokeHub(status=None, shard="test")
        return await hub.wait_ready("file", target, hashcode("file", target), 60, timeout=0)

    result = asyncio.run(scenario())
    assert result.ready and "found" in result.detail


def test_a_hung_poke_delays_only_its_own_targets_and_reads_slow(tmp_path, monkeypatch):
    """A listing that hangs (a hard-mounted NFS directory) does not hold up another directory's sensors;
    after the poke timeout its targets say they are slow; the hung call is not started again meanwhile."""
    hung_dir, ok_dir = tmp_path / "d0", tmp_path / "d1"
    for d in (hung_dir, ok_dir):
        d.mkdir()
    hung_target, ok_target = (FilePoker().validate({"path": str(d / "edw.x.job")}) for d in (hung_dir, ok_dir))
    release = threading.Event()
    calls = Counter()
    real = FilePoker.poke_batch

    def poke_batch(self, targets):
        directory = os.path.dirname(targets[0]["path"])
        calls[directory] += 1
        if directory == str(hung_dir):
            release.wait(20)
        return real(self, targets)

    monkeypatch.setattr(FilePoker, "poke_batch", poke_batch)

    async def scenario():
        hub = PokeHub(status=None, shard="test", poke_timeout_seconds=0.5)
        hung = asyncio.create_task(hub.wait_ready("file", hung_target, hashcode("file", hung_target), 0.2))
        await asyncio.sleep(0.1)
        open(ok_target["path"], "w").close()
        ok = await asyncio.wait_for(hub.wait_ready("file", ok_target, hashcode("file", ok_target), 0.2), timeout=3)
        assert ok.ready
        slow = hub.entries[hashcode("file", hung_target)]
        await asyncio.sleep(1.0)
        assert slow.last is not None and "still running after 0.5s" in slow.last.detail and slow.last.state == "slow"
        assert calls[str(hung_dir)] == 1  # no second thread piled onto the hung directory
        open(hung_target["path"], "w").close()
        release.set()
        result = await asyncio.wait_for(hung, timeout=5)
        assert result.ready

    try:
        asyncio.run(scenario())
    finally:
        release.set()


def test_a_permanent_failure_releases_the_waiters_at_once(tmp_path, monkeypatch):
    [target] = _targets(tmp_path, 1, 1)

    def denied(self, targets):
        return [PokeResult(False, "no permission to list /x", error=True, permanent=True)] * len(targets)

    monkeypatch.setattr(FilePoker, "poke_batch", denied)

    async def scenario():
        hub = PokeHub(status=None, shard="test")
        code = hashcode("file", target)
        return await asyncio.wait_for(
            asyncio.gather(*(hub.wait_ready("file", target, code, 60, timeout=3600) for _ in range(3))), timeout=5
        )

    results = asyncio.run(scenario())
    assert all(r.state == "failed" and "no permission" in r.detail for r in results)
