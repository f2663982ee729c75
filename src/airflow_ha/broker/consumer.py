"""The consumer side of the transport: who waits on what, and the blocking drain loop.

A publish wakes ONE consumer, like ``BRPOP`` in kombu's redis transport: a publish pushes a token on the
queue's wake list (``{q}:wake``) when it holds none, and an idle consumer waits for a token with ``BLPOP``
on a connection of its own (:class:`Waiter`); Redis hands a pushed token to exactly one blocked client. The
woken consumer then takes the message with the GET script (which records it as unacked atomically, and
leaves a token for the next consumer while messages remain). A consumer waits only while its prefetch has
room; a token it pops when full goes back to the list, so another consumer gets it. ``BLPOP`` times out
every ``poll_sweep_interval`` (1 s): the consumer then looks at the queue (one ``EXISTS`` of its lists) and
reads it if it holds messages, which covers tokens lost with a failed-over master (tokens are not
replicated: see :mod:`airflow_ha.broker.scripts`). A BLPOP left unanswered past its timeout plus
``socket_timeout`` (its master vanished without closing the connection) is dropped and the queue read anew.

Fanout (broadcast, Celery remote control) uses sharded pub/sub (``SSUBSCRIBE``), one pub/sub connection
per master, delivered to live subscribers only, as kombu's redis transport does. A ``sunsubscribe`` the
server pushes (the channel's slot moved away, the master was demoted) resubscribes at once.

:class:`Drain` runs the loop Celery's blocking ``synloop`` calls through ``drain_events``: one
``selectors`` poll over the waiters' and pub/sub sockets plus a wake pipe that an ack writes to (a freed
prefetch slot: time to wait on queues again). The pipe is made when the connection opens and closed with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
from time import monotonic

import redis.exceptions as rexc
from kombu.utils.json import loads

from airflow_ha import metrics
from airflow_ha.broker import keys
from airflow_ha.broker.errors import BrokerUnavailable
from airflow_ha.broker.routing import RETRYABLE, SlotRouter

log = logging.getLogger(__name__)

RETRY_AFTER = 0.25  # s before a failed wait or subscription is tried again
PUBSUB_PING_EVERY = 5.0  # s between PINGs on an idle pub/sub connection: a silent master is found dead


class Waiter:
    """One channel's ``BLPOP`` on one queue's wake list, on a dedicated connection to the slot's master."""

    def __init__(self, channel, queue: str):
        self.channel = channel
        self.queue = queue
        self.key = keys.wake_list(queue)
        self.conn = None
        self.pool = None
        self.node: str | None = None
        self.armed = False
        self.retry_at = 0.0
        self.answer_by = 0.0  # an armed BLPOP unanswered past this is dead: see Drain._expire_waiters

    @property
    def sock(self):
        return getattr(self.conn, "_sock", None) if self.conn is not None else None

    def arm(self, router: SlotRouter, timeout: float) -> None:
        client, node = router.node_for(self.key)
        if self.conn is None or self.node != node.name:
            self.drop()
            self.pool = client.connection_pool
            self.conn = self.pool.get_connection()
            self.node = node.name
        self.conn.send_command("BLPOP", self.key, timeout)
        self.armed = True
        self.answer_by = monotonic() + timeout + router.opts.socket_timeout

    def read(self) -> bool:
        """The answer to the pending BLPOP: True for a token, False for a timeout."""
        self.armed = False
        return self.conn.read_response() is not None

    def drop(self) -> None:
        self.armed = False
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.disconnect()  # a BLPOP may be pending: the connection cannot be reused
            with contextlib.suppress(Exception):
                self.pool.release(self.conn)
        self.conn = self.pool = self.node = None


class Drain:
    def __init__(self, transport, router: SlotRouter):
        self.transport = transport
        self.router = router
        self.opts = router.opts
        self._waiters: dict[tuple[int, str], Waiter] = {}
        self._pubsubs: dict = {}  # node name -> PubSub (fanout)
        self._pong_due: dict[str, float] = {}  # node name -> answer deadline of the PING sent on its pub/sub
        self._next_ping: dict[str, float] = {}  # node name -> when to PING its pub/sub next
        self._sub_node: dict[str, str] = {}  # fanout channel -> node name it is subscribed on
        self._wanted: dict[str, list] = {}
        self._subs_dirty = True
        self._resubscribe_at = 0.0
        self._broken_since: float | None = None
        self._next_visibility = 0.0
        self._next_late_acks = 0.0
        self._read_retry_at = 0.0  # after a failed read (master failing over): back off, never spin
        self._chan_rr = 0
        self._selector = selectors.DefaultSelector()
        self._registered: dict[int, tuple[object, object]] = {}  # fd -> (socket, owner) registered for it
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)

    def close(self) -> None:
        for waiter in self._waiters.values():
            waiter.drop()
        self._waiters.clear()
        for ps in self._pubsubs.values():
            with contextlib.suppress(Exception):
                ps.close()
        self._pubsubs.clear()
        self._pong_due.clear()
        self._next_ping.clear()
        self._sub_node.clear()
        with contextlib.suppress(Exception):
            self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def wakeup(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def subscriptions_changed(self) -> None:
        self._subs_dirty = True
        self.wakeup()

    # -- waiters (direct queues) ---------------------------------------------------------------------
    def _sync_waiters(self) -> None:
        wanted = {}
        for channel in self.transport.channels:
            for queue in channel._active_queues:
                if queue not in channel._fanout_queues:
                    wanted[(id(channel), queue)] = channel
        for key in [k for k in self._waiters if k not in wanted]:
            self._waiters.pop(key).drop()
        for key, channel in wanted.items():
            if key not in self._waiters:
                self._waiters[key] = Waiter(channel, key[1])

    def _arm_waiters(self) -> None:
        now = monotonic()
        for waiter in self._waiters.values():
            channel = waiter.channel
            if waiter.armed or waiter.queue in channel._ready or now < waiter.retry_at:
                continue
            if not channel.qos.can_consume():
                continue
            try:
                waiter.arm(self.router, self.opts.poll_sweep_interval)
            except RETRYABLE as exc:
                self._waiter_failed(waiter, exc)

    def _expire_waiters(self) -> None:
        """Drop every wait its master left unanswered past its BLPOP timeout plus socket_timeout.

        A master that vanishes without closing the connection (a frozen process, a deleted pod whose IP no
        longer routes, a node cut off) never answers a pending BLPOP and never errors either: no byte is in
        flight, so TCP notices nothing. The socket never turns readable, and without this the queue was never
        waited on or read again (CI, after every Redis pod was restarted at once).
        """
        now = monotonic()
        for waiter in self._waiters.values():
            if waiter.armed and now >= waiter.answer_by:
                self._waiter_failed(waiter, rexc.TimeoutError(f"no answer to BLPOP from {waiter.node}"))

    def _waiter_failed(self, waiter: Waiter, exc: BaseException) -> None:
        log.warning("broker: waiting on %r failed (%s: %s); refreshing slot map", waiter.queue, type(exc).__name__, exc)
        # the BLPOP is sent again (at once after MOVED): a consumer's retry, as a publish's is counted
        metrics.incr("broker.retries", error=type(exc).__name__)
        waiter.drop()
        # MOVED names the slot's new owner (a reshard, a finished failover): wait there at once
        moved = isinstance(exc, rexc.MovedError) or str(exc).startswith("MOVED")
        waiter.retry_at = monotonic() + (0.0 if moved else RETRY_AFTER)
        waiter.channel._ready.add(waiter.queue)  # read the queue meanwhile: nothing waits unseen
        self.router.refresh()

    def _on_waiter_readable(self, waiter: Waiter) -> None:
        try:
            token = waiter.read()
        except (*RETRYABLE, rexc.ResponseError) as exc:  # MOVED (resharded) is a ResponseError here
            self._waiter_failed(waiter, exc)
            return
        channel = waiter.channel
        if token and not channel.qos.can_consume():
            self._give_back(waiter.queue)
            return
        if token:
            channel._probe.discard(waiter.queue)
        elif waiter.queue not in channel._ready:
            channel._probe.add(waiter.queue)  # the periodic safety read: no token came, look before reading
        channel._ready.add(waiter.queue)

    def _give_back(self, queue: str) -> None:
        key = keys.wake_list(queue)
        with contextlib.suppress(BrokerUnavailable):
            self.router.run_script("wake", [key], [], deadline=0)

    # -- fanout subscriptions ------------------------------------------------------------------------
    def _wanted_fanout(self) -> dict[str, list]:
        wanted: dict[str, list] = {}
        for channel in self.transport.channels:
            for queue in channel._active_queues:
                exchange = channel._fanout_queues.get(queue)
                if exchange is not None:
                    wanted.setdefault(keys.fanout_channel(exchange), []).append((channel, queue))
        return wanted

    def _drop_pubsub(self, node_name: str) -> None:
        self._pong_due.pop(node_name, None)
        self._next_ping.pop(node_name, None)
        ps = self._pubsubs.pop(node_name, None)
        if ps is not None:
            with contextlib.suppress(Exception):
                ps.close()
        for chan, name in list(self._sub_node.items()):
            if name == node_name:
                del self._sub_node[chan]
        self._subs_dirty = True

    def _pubsub_lost(self, node_name: str, exc: BaseException) -> None:
        """Drop a pub/sub connection that failed or went silent; its channels are subscribed again at their
        current masters (the slot map is refreshed: the node may have been failed over)."""
        log.warning("broker: pub/sub connection to %s lost (%s: %s); resubscribing", node_name, type(exc).__name__, exc)
        metrics.incr("broker.retries", error=type(exc).__name__)
        self._drop_pubsub(node_name)
        self.router.refresh()

    def _ensure_subscriptions(self) -> None:
        if not self._subs_dirty or monotonic() < self._resubscribe_at:
            return
        self._wanted = wanted = self._wanted_fanout()
        cluster = self.router.cluster
        try:
            by_node: dict[str, list[str]] = {}
            nodes = {}
            for chan in wanted:
                node = cluster.get_node_from_key(chan)
                nodes[node.name] = node
                by_node.setdefault(node.name, []).append(chan)
            for chan, name in list(self._sub_node.items()):  # no longer wanted, or moved elsewhere
                if chan not in wanted or chan not in by_node.get(name, ()):
                    ps = self._pubsubs.get(name)
                    del self._sub_node[chan]
                    if ps is not None:
                        ps.sunsubscribe(chan)
            for name, chans in by_node.items():
                new = [c for c in chans if self._sub_node.get(c) != name]
                if not new:
                    continue
                ps = self._pubsubs.get(name)
                if ps is None:
                    ps = self._pubsubs[name] = cluster.get_redis_connection(nodes[name]).pubsub()
                for c in new:  # SSUBSCRIBE of several channels needs them in one slot: one command each
                    ps.ssubscribe(c)
                    self._sub_node[c] = name
            self._subs_dirty = False
            self._broken_since = None
        except RETRYABLE as exc:
            metrics.incr("broker.retries", error=type(exc).__name__)  # subscribed again after a back-off
            self._broken(exc)

    def _read_fanout(self) -> bool:
        delivered = False
        for name, ps in list(self._pubsubs.items()):
            try:
                while True:
                    msg = ps.get_message(ignore_subscribe_messages=False, timeout=0.0)
                    if msg is None:
                        break
                    if msg.get("type") == "pong":
                        self._pong_due.pop(name, None)
                        continue
                    chan = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                    if msg.get("type") == "sunsubscribe":
                        if self._sub_node.get(chan) == name:  # the server dropped us: the slot moved
                            log.warning("broker: %s dropped the subscription to %s; resubscribing", name, chan)
                            del self._sub_node[chan]
                            self._subs_dirty = True
                            self._resubscribe_at = 0.0
                            self.router.refresh()
                        continue
                    if msg.get("type") not in ("smessage", "message"):
                        continue
                    for channel, queue in self._wanted.get(chan, ()):
                        if queue in channel._active_queues:
                            self.transport._deliver(loads(msg["data"]), queue)
                            delivered = True
            except (*RETRYABLE, rexc.PubSubError, rexc.ResponseError) as exc:
                self._pubsub_lost(name, exc)
                self._resubscribe_at = monotonic() + RETRY_AFTER  # back off: never spin on a failing node
        return delivered

    def _check_pubsubs(self) -> None:
        """PING each pub/sub connection now and then; one whose PONG is late past socket_timeout is dropped
        and its channels subscribed again at their current masters.

        A subscriber only ever reads: a master that vanished without closing the connection (frozen, its pod
        deleted, its node cut off) leaves it waiting for broadcasts that now go to the promoted replica.
        """
        now = monotonic()
        for name, ps in list(self._pubsubs.items()):
            due = self._pong_due.get(name)
            if due is not None and now >= due:
                self._pubsub_lost(name, rexc.TimeoutError(f"no PONG from {name} within socket_timeout"))
                continue
            if due is None and now >= self._next_ping.setdefault(name, now + PUBSUB_PING_EVERY):
                try:
                    ps.ping()
                except (*RETRYABLE, rexc.PubSubError) as exc:
                    self._pubsub_lost(name, exc)
                    continue
                self._pong_due[name] = now + self.opts.socket_timeout
                self._next_ping[name] = now + PUBSUB_PING_EVERY

    # -- the loop ------------------------------------------------------------------------------------
    def _broken(self, exc: BaseException) -> None:
        now = monotonic()
        if self._broken_since is None:
            self._broken_since = now
        if now - self._broken_since > self.opts.failover_timeout:
            raise BrokerUnavailable(
                f"Redis Cluster unusable for more than failover_timeout={self.opts.failover_timeout:g}s: {exc}"
            ) from exc
        log.warning("broker: %s: %s; refreshing slot map", exc.__class__.__name__, exc)
        self._resubscribe_at = now + RETRY_AFTER
        for name in list(self._pubsubs):
            self._drop_pubsub(name)
        self._subs_dirty = True
        self.router.refresh()

    def drain_once(self) -> bool:
        self._sync_waiters()
        self._expire_waiters()
        self._ensure_subscriptions()
        if self._read_fanout():
            return True
        self._check_pubsubs()
        now = monotonic()
        if now >= self._next_late_acks:  # acks an outage held back: the slot's master may be back
            self._next_late_acks = now + RETRY_AFTER * 4
            for channel in self.transport.channels:
                if channel._late_acks:
                    channel.retry_late_acks()
        if now >= self._next_visibility:
            self._next_visibility = now + self.opts.sweep_interval
            for channel in self.transport.channels:
                if channel._active_queues:
                    try:
                        channel.restore_visible()
                    except BrokerUnavailable as exc:
                        self._broken(exc)
        channels = [c for c in self.transport.channels if c._consumers and c._ready]
        if now < self._read_retry_at:
            channels = []
        for i in range(len(channels)):
            channel = channels[(self._chan_rr + i) % len(channels)]
            if not channel.qos.can_consume():
                continue
            try:
                if channel.deliver_one():
                    self._chan_rr += i + 1
                    self._broken_since = None
                    return True
            except BrokerUnavailable as exc:
                self._read_retry_at = monotonic() + RETRY_AFTER
                self._broken(exc)
        self._arm_waiters()
        return False

    def drain_events(self, timeout=None) -> None:
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self.drain_once():
                return
            now = monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()
            wait = self.opts.poll_sweep_interval
            if any(self._readable(c) for c in self.transport.channels):
                # a queue left to read (more messages remain, or a failed read once its back-off ends)
                wait = min(wait, max(self._read_retry_at - now, 0.0))
            if self._subs_dirty:  # resubscribe as soon as its back-off allows
                wait = min(wait, max(self._resubscribe_at - now, 0.0))
            for when in (*self._pong_due.values(), *self._next_ping.values()):  # pub/sub health: PING, PONG due
                wait = min(wait, max(when - now, 0.0))
            for waiter in self._waiters.values():  # a failed wait is re-armed when its back-off ends,
                if not waiter.armed and waiter.retry_at > now:
                    wait = min(wait, waiter.retry_at - now)
                elif waiter.armed:  # an unanswered one dropped when its deadline passes
                    wait = min(wait, max(waiter.answer_by - now, 0.0))
            if deadline is not None:
                wait = min(wait, deadline - now)
            self._wait(max(wait, 0.0))

    @staticmethod
    def _readable(channel) -> bool:
        return bool(channel._consumers and channel._ready - channel._fanout_queues.keys() and channel.qos.can_consume())

    def _wait(self, timeout: float) -> None:
        sockets: dict[int, tuple[object, object]] = {}
        for waiter in self._waiters.values():
            if waiter.armed and waiter.sock is not None:
                sockets[waiter.sock.fileno()] = (waiter.sock, waiter)
        for ps in self._pubsubs.values():
            sock = getattr(ps.connection, "_sock", None) if ps.connection is not None else None
            if sock is not None:
                sockets[sock.fileno()] = (sock, ps)
        self._sync_selector(sockets)
        try:
            events = self._selector.select(timeout)
        except (OSError, ValueError):  # a socket closed under us: the next read reports it
            return
        for key, _mask in events:
            if key.fd == self._wake_r:
                with contextlib.suppress(BlockingIOError, OSError):
                    while os.read(self._wake_r, 4096):
                        pass
            elif isinstance(key.data, Waiter) and key.data.armed:
                self._on_waiter_readable(key.data)

    def _sync_selector(self, sockets: dict[int, tuple[object, object]]) -> None:
        for fd, (sock, _owner) in list(self._registered.items()):
            if fd not in sockets or sockets[fd][0] is not sock:
                with contextlib.suppress(KeyError, ValueError, OSError):
                    self._selector.unregister(fd)
                del self._registered[fd]
        for fd, entry in sockets.items():
            known = self._registered.get(fd)
            if known == entry:
                continue
            with contextlib.suppress(KeyError, ValueError, OSError):
                if known is None:
                    self._selector.register(fd, selectors.EVENT_READ, entry[1])
                else:
                    self._selector.modify(fd, selectors.EVENT_READ, entry[1])
                self._registered[fd] = entry
