"""The per-process poke hub: one entry per hashcode, one batch per kind per tick.

Every :class:`~airflow_ha.sensors.triggers.SmartSensorTrigger` in a triggerer process awaits
:meth:`PokeHub.wait_ready`. However many tasks wait on one hashcode, the hub keeps one entry and pokes
it once per interval (the shortest interval any of its waiters asked for). Due entries of one kind and
batch key (one directory, one connection + table) are answered by one ``Poker.poke_batch`` call, run in
a worker thread so the triggerer's event loop never blocks on I/O. When an entry turns ready every
waiter is released at once.

A hub lives as long as its event loop; :func:`get_hub` returns the one for the running loop.

Each shard group runs in two (or more) triggerer processes, its *replicas*: Airflow hands a trigger to
whichever of them loads it first, so the waiters of one target may sit in both processes and the target
is then poked once per interval by each (at most ``replicas`` pokes per interval, not one). Status
records name the group (``shard-<g>``) and the process (its Airflow hostname, the triggerer job's).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from airflow_ha.sensors.pokers import Poker, PokeResult, get_poker
from airflow_ha.sensors.status import PokeRecord, StatusStore
from airflow_ha.settings import ENV_SHARD_ORDINAL

log = logging.getLogger(__name__)

MIN_INTERVAL = 0.2  # seconds; a floor so a mistaken poke_interval=0 cannot spin a shard


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
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def waiters(self) -> int:
        return sum(self.intervals.values())

    @property
    def interval(self) -> float:
        return max(MIN_INTERVAL, min(self.intervals))


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
    def __init__(self, status: StatusStore | None = None, shard: str | None = None, replica: str | None = None) -> None:
        self.entries: dict[int, Entry] = {}
        self.status = status
        self.shard = shard or shard_label()
        self.replica = replica or replica_label()
        self.pokes: Counter = Counter()  # kind -> targets poked (one per entry per tick)
        self.batches: Counter = Counter()  # kind -> poke_batch calls
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- waiters ---------------------------------------------------------------------------------
    async def wait_ready(
        self, kind: str, target: dict[str, Any], hashcode: int, interval: float, timeout: float | None = None
    ) -> PokeResult:
        """The poke result that found the target ready, or after ``timeout`` seconds the last one seen.

        ``result.ready`` tells which; a target never poked before the timeout reads "never poked".
        """
        entry = self.entries.get(hashcode)
        if entry is None:
            entry = self.entries[hashcode] = Entry(hashcode, get_poker(kind), target, next_due=time.monotonic())
        entry.intervals[float(interval)] += 1
        self._ensure_loop()
        self._wake.set()
        try:
            await asyncio.wait_for(entry.ready.wait(), timeout)
            return entry.last
        except TimeoutError:
            return entry.last if entry.last is not None else PokeResult(False, "never poked")
        finally:
            entry.intervals[float(interval)] -= 1
            if entry.intervals[float(interval)] <= 0:
                del entry.intervals[float(interval)]
            if not entry.intervals and self.entries.get(hashcode) is entry:
                del self.entries[hashcode]

    # -- the poke loop ---------------------------------------------------------------------------
    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="airflow-ha-poke-hub")

    async def _run(self) -> None:
        while self.entries:
            now = time.monotonic()
            due = [e for e in self.entries.values() if e.next_due <= now and not e.ready.is_set()]
            if due:
                await self.poke(due)
            pending = [e.next_due for e in self.entries.values() if not e.ready.is_set()]
            if not pending:
                await asyncio.sleep(0.05)  # released waiters are removing their entries
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, min(pending) - time.monotonic()))

    async def poke(self, due: list[Entry]) -> None:
        """Poke every due entry: one ``poke_batch`` call per (kind, batch key), run concurrently."""
        groups: dict[tuple, list[Entry]] = defaultdict(list)
        for entry in due:
            groups[(entry.poker.kind, entry.poker.batch_key(entry.target))].append(entry)
        outcomes = await asyncio.gather(
            *(asyncio.to_thread(self._poke_group, entries) for entries in groups.values()), return_exceptions=True
        )
        poked_at = time.time()
        records = []
        batches: Counter = Counter()
        for entries, outcome in zip(groups.values(), outcomes, strict=True):
            kind = entries[0].poker.kind
            batches[kind] += 1
            if isinstance(outcome, BaseException):  # a poker bug must not kill the hub: report and retry
                log.exception("poke of %d %s target(s) raised", len(entries), kind, exc_info=outcome)
                outcome = [PokeResult(False, f"poke raised {outcome!r}", error=True)] * len(entries)
            for entry, result in zip(entries, outcome, strict=True):
                entry.last, entry.last_poke_at = result, poked_at
                entry.pokes += 1
                entry.next_due = _next_tick(time.monotonic(), entry.interval)
                self.pokes[kind] += 1
                records.append(
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
                    )
                )
                if result.ready:
                    entry.ready.set()
        self.batches.update(batches)
        if self.status is not None:
            await asyncio.to_thread(self.status.record, records, self.shard, dict(batches), self.replica)

    @staticmethod
    def _poke_group(entries: list[Entry]) -> list[PokeResult]:
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
