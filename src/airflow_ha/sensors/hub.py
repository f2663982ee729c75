"""The per-process poke hub: one entry per hashcode, one batch per kind per tick.

Every :class:`~airflow_ha.sensors.triggers.SmartSensorTrigger` in a triggerer process awaits
:meth:`PokeHub.wait_ready`. However many tasks wait on one hashcode, the hub keeps one entry and pokes
it once per interval (the shortest interval any of its waiters asked for). Due entries of one kind and
batch key (one directory, one connection + table) are answered by one ``Poker.poke_batch`` call, run in
a worker thread so the triggerer's event loop never blocks on I/O. When an entry turns ready every
waiter is released at once.

Every batch is poked on its own, with its own timeout (``AIRFLOW_HA_SENSOR_POKE_TIMEOUT``, 30 s): a listing
that hangs on a hard-mounted NFS directory or a query stuck on a lock delays only its own targets. After
the timeout its targets read "poke still running after N s" in the sensor list; the hung call keeps its
thread, and that batch is not poked again until it returns, so a hung mount holds one thread, not one per
interval. A waiter whose deadline passed before its target was poked (its shard was away) gets one poke
before it times out, as Airflow 2.2's smart sensor poked before judging the timeout. A result the poker
marks ``permanent`` (a missing connection or table, no permission) releases the waiters at once: their
tasks fail with the cause instead of waiting out their timeout.

A hub lives as long as its event loop; :func:`get_hub` returns the one for the running loop.

Each shard group runs in two (or more) triggerer processes, its *replicas*: Airflow hands a trigger to
whichever of them loads it first, so the waiters of one target may sit in both processes and the target
is then poked once per interval by each (at most ``replicas`` pokes per interval, not one). Status
records name the group (``shard-<g>``) and the process (its Airflow hostname, the triggerer job's).

The hub reports ``sensors.*`` metrics (:mod:`airflow_ha.metrics`): waiting sensors and distinct targets of
this pod (a gauge, every second while it has waiters, 0 when it has none), pokes, poke errors and the
latency of each batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_ha import metrics
from airflow_ha.sensors.pokers import Poker, PokeResult, get_poker
from airflow_ha.sensors.status import FinishedSensor, PokeRecord, StatusStore
from airflow_ha.settings import ENV_SHARD_ORDINAL, poke_timeout

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.2  # seconds; a floor so a mistaken poke_interval=0 cannot spin a shard
POKE_THREADS = 32  # batches poked at once; a hung batch holds one until its call returns
GAUGE_EVERY = 1.0  # seconds between the waiting/targets gauges of a hub with waiters


def _next_tick(now: float, interval: float) -> float:
    """The next multiple of ``interval``: entries with equal intervals fall due together, in one batch."""
    return (math.floor(now / interval) + 1) * interval


@dataclass
class Entry:
    hashcode: int
    poker: Poker
    target: dict[str, Any]
    intervals: Counter = field(default_factory=Counter)  # poke_interval -> waiters asking for it
    next_due: float = 0.0
    last: PokeResult | None = None
    last_poke_at: float | None = None
    pokes: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # ready, or failed for good: release waiters
    poked: asyncio.Event = field(default_factory=asyncio.Event)  # set (and replaced) after each poke

    @property
    def waiters(self) -> int:
        return sum(self.intervals.values())

    @property
    def interval(self) -> float:
        return max(MIN_INTERVAL, min(self.intervals))

    @functools.cached_property
    def group(self) -> tuple[str, Hashable]:
        """The batch this entry is poked in: one ``poke_batch`` call per group (the target never changes, and
        the loop asks on every turn for every entry)."""
        return self.poker.kind, self.poker.batch_key(self.target)


@dataclass(frozen=True)
class Waited:
    result: PokeResult
    pokes: int  # pokes of the target by this process while the waiter waited


def shard_label() -> str:
    """The shard group: ``shard-<g>``, the same for every replica of the group."""
    ordinal = os.environ.get(ENV_SHARD_ORDINAL)
    return f"shard-{ordinal}" if ordinal not in (None, "") else socket.gethostname()


def replica_label() -> str:
    """This process: Airflow's hostname (``[core] hostname_callable``), as on its triggerer job row."""
    try:
        from airflow.utils.net import get_hostname

        return get_hostname()
    except Exception:  # a broken hostname_callable must not stop sensors
        return socket.gethostname()


class PokeHub:
    def __init__(
        self,
        status: StatusStore | None = None,
        shard: str | None = None,
        replica: str | None = None,
        poke_timeout_seconds: float | None = None,
    ) -> None:
        self.entries: dict[int, Entry] = {}
        self.status = status
        self.shard = shard or shard_label()
        self.replica = replica or replica_label()
        self.poke_timeout = poke_timeout() if poke_timeout_seconds is None else poke_timeout_seconds
        self.pokes: Counter = Counter()  # kind -> targets poked (one per entry per tick)
        self.batches: Counter = Counter()  # kind -> poke_batch calls
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[tuple[str, Hashable], asyncio.Task] = {}  # group -> its running poke
        self._executor = ThreadPoolExecutor(max_workers=POKE_THREADS, thread_name_prefix="airflow-ha-poke")
        self._unrecorded: list[PokeRecord] = []
        self._unrecorded_batches: Counter = Counter()
        self._pod = socket.gethostname()  # metrics label: the pod name (the replica label may be its IP)
        self._gauged_at = 0.0

    # -- waiters ---------------------------------------------------------------------------------
    async def wait_ready(
        self, kind: str, target: dict[str, Any], hashcode: int, interval: float, timeout: float | None = None
    ) -> PokeResult:
        """The poke result that found the target ready (or failed for good: ``result.permanent``), or after
        ``timeout`` seconds the last one seen. A target not poked since this waiter came is poked once
        before the timeout is judged, however little time was left.
        """
        return (await self.wait(kind, target, hashcode, interval, timeout)).result

    async def wait(
        self, kind: str, target: dict[str, Any], hashcode: int, interval: float, timeout: float | None = None
    ) -> Waited:
        """:meth:`wait_ready`, with how many times this process poked the target while this waiter waited."""
        entry = self.entries.get(hashcode)
        if entry is None:
            entry = self.entries[hashcode] = Entry(hashcode, get_poker(kind), target, next_due=time.monotonic())
        entry.intervals[float(interval)] += 1
        pokes_before = entry.pokes
        self._ensure_loop()
        self._wake.set()
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the wait in a task of its own (Python 3.11), 1.1 KB
            # of the 6.0 KB each waiting sensor cost at 10,000 sensors (benchmarks/sensor_scale.py)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await entry.ready.wait()
                return Waited(entry.last, entry.pokes - pokes_before)
            if entry.pokes == pokes_before:  # the deadline passed while nobody poked it: poke, then judge
                poked = entry.poked
                entry.next_due = min(entry.next_due, time.monotonic())
                self._wake.set()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poke_timeout + 1):
                        await poked.wait()
            last = entry.last if entry.last is not None else PokeResult(False, "never poked")
            return Waited(last, entry.pokes - pokes_before)
        finally:
            entry.intervals[float(interval)] -= 1
            if entry.intervals[float(interval)] <= 0:
                del entry.intervals[float(interval)]
            if not entry.intervals and self.entries.get(hashcode) is entry:
                del self.entries[hashcode]
                self._wake.set()  # the loop re-counts (and ends, reporting 0 waiting, when nothing is left)

    # -- the poke loop ---------------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="airflow-ha-poke-hub")

    def _waiting(self) -> list[Entry]:
        """Entries still waiting whose group has no poke running."""
        return [e for e in self.entries.values() if not e.ready.is_set() and e.group not in self._inflight]

    async def _run(self) -> None:
        while self.entries or self._inflight:
            now = time.monotonic()
            due = [e for e in self._waiting() if e.next_due <= now]
            if due:
                self.start_pokes(due)
            if now - self._gauged_at >= GAUGE_EVERY:
                self._gauge()
            await self._flush_status()
            pending = [e.next_due for e in self._waiting()]
            self._wake.clear()
            # nothing due: sleep until the next tick, or until a poke ends or a waiter comes (_wake)
            sleep = max(0.0, min(pending) - time.monotonic()) if pending else 0.5
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(sleep, GAUGE_EVERY))
        self._gauge()  # nothing waits here any more: 0, not the last count
        await self._flush_status()

    def _gauge(self) -> None:
        self._gauged_at = time.monotonic()
        waiting = sum(e.waiters for e in self.entries.values())
        metrics.gauge("sensors.waiting", waiting, shard=self.shard, pod=self._pod)
        metrics.gauge("sensors.targets", len(self.entries), shard=self.shard, pod=self._pod)

    def start_pokes(self, due: list[Entry]) -> None:
        """Start one poke per group of the due entries (one ``poke_batch`` call each), each on its own."""
        groups: dict[tuple[str, Hashable], list[Entry]] = defaultdict(list)
        for entry in due:
            groups[entry.group].append(entry)
        loop = asyncio.get_running_loop()
        for group, entries in groups.items():
            self._inflight[group] = loop.create_task(self._poke_group(group, entries))

    async def _poke_group(self, group: tuple[str, Hashable], entries: list[Entry]) -> None:
        kind = group[0]
        started = time.monotonic()
        call = asyncio.get_running_loop().run_in_executor(self._executor, self._call_poker, entries)
        try:
            try:
                results = await asyncio.wait_for(asyncio.shield(call), self.poke_timeout)
            except TimeoutError:
                names = ", ".join(e.poker.describe(e.target) for e in entries[:3])
                log.warning("poke of %d %s target(s) (%s) still running after %gs", len(entries), kind, names,
                            self.poke_timeout)  # fmt: skip
                slow = PokeResult(
                    False, f"poke still running after {self.poke_timeout:g}s (slow or hung)", error=True, slow=True
                )
                self._apply(kind, entries, [slow] * len(entries))
                results = await call  # the group stays in flight until the call returns: one thread per hung group
        except Exception as exc:  # a poker bug must not kill the hub: report and poke again next interval
            log.exception("poke of %d %s target(s) raised", len(entries), kind, exc_info=exc)
            results = [PokeResult(False, f"poke raised {exc!r}", error=True)] * len(entries)
        finally:
            self._inflight.pop(group, None)
            self._wake.set()
        metrics.timing("sensors.poke", time.monotonic() - started, kind=kind)
        self._apply(kind, entries, results)

    def _apply(self, kind: str, entries: list[Entry], results: list[PokeResult]) -> None:
        poked_at = time.time()
        self.batches[kind] += 1
        self._unrecorded_batches[kind] += 1
        for entry, result in zip(entries, results, strict=True):
            entry.last, entry.last_poke_at = result, poked_at
            entry.pokes += 1
            entry.next_due = _next_tick(time.monotonic(), entry.interval)
            self.pokes[kind] += 1
            self._unrecorded.append(
                PokeRecord(
                    entry.hashcode,
                    kind,
                    entry.poker.describe(entry.target),
                    self.shard,
                    poked_at,
                    result.ready,
                    result.detail,
                    entry.waiters,
                    self.replica,
                    result.state,
                )
            )
            if result.ready or result.permanent:
                entry.ready.set()
            entry.poked.set()
            entry.poked = asyncio.Event()
        metrics.incr("sensors.pokes", len(entries), shard=self.shard, kind=kind)
        metrics.incr("sensors.poke_errors", sum(1 for r in results if r.error), shard=self.shard, kind=kind)
        self._wake.set()

    async def _flush_status(self) -> None:
        if not self._unrecorded:
            return
        records, batches = self._unrecorded, dict(self._unrecorded_batches)
        self._unrecorded, self._unrecorded_batches = [], Counter()
        if self.status is not None:
            await asyncio.to_thread(self.status.record, records, self.shard, batches, self.replica)

    def record_finished(self, finished: FinishedSensor) -> None:
        """Add a finished sensor to the status store's history, in the background (best-effort)."""
        if self.status is not None:
            self._executor.submit(self.status.record_finished, finished)

    @staticmethod
    def _call_poker(entries: list[Entry]) -> list[PokeResult]:
        results = entries[0].poker.poke_batch([e.target for e in entries])
        if len(results) != len(entries):
            raise RuntimeError(f"{entries[0].poker.kind} poker returned {len(results)} results for {len(entries)}")
        return results


_HUBS: dict[int, PokeHub] = {}


def get_hub() -> PokeHub:
    """The hub of the running event loop (a triggerer process has one loop)."""
    loop = asyncio.get_running_loop()
    hub = _HUBS.get(id(loop))
    if hub is None or hub._loop is not loop:
        try:
            status = StatusStore.from_config()
        except Exception as exc:  # a bad status URL must not stop sensors; the listing says "unknown"
            log.warning("sensor status store disabled: %s", exc)
            status = None
        hub = _HUBS[id(loop)] = PokeHub(status=status)
        hub._loop = loop
    return hub
