"""kombu transport for Redis Cluster (``rediscluster://``), laid out like ``kombu/transport/redis.py``.

Features
========
* Type: Virtual
* Supports Direct: Yes
* Supports Topic: Yes
* Supports Fanout: Yes (sharded pub/sub: live subscribers only, as kombu's redis transport)
* Supports Priority: Yes (``priority_steps`` lists per queue, as kombu's redis transport)
* Supports TTL: No
* Supports native delayed delivery: No

Every queue lives in ONE hash slot (:mod:`airflow_ha.broker.keys`), so each state change is one atomic
Lua script (:mod:`airflow_ha.broker.scripts`) on the slot's master: publish, get (recording the message
as unacked in the same step), ack, requeue, the visibility sweep. The parts, as kombu separates them:

* :mod:`~airflow_ha.broker.health` — the check every connection (and ``airflow-ha broker-check``) runs first;
* :mod:`~airflow_ha.broker.routing` — the slot's master, retries through failovers and reshards, ``WAIT``/
  ``WAITAOF`` after writes; :mod:`~airflow_ha.broker.replication` — what a short ``WAIT`` does (pure);
* :mod:`~airflow_ha.broker.consumer` — wake tokens (a publish wakes one consumer), fanout subscriptions
  and the blocking drain loop;
* this module — kombu's :class:`Channel`, :class:`QoS` and :class:`Transport`.

Connection String
=================
.. code-block::

    rediscluster://[[user]:password@]host1:port1[,host2:port2,...][/][?option=value&...]
    redisclusters://...            (TLS; same as ?ssl=true; ssl_ca_certs, ssl_certfile, ... in the query)

Passwords with ``@ : / ? # %`` must be URL-encoded. Any transport option can be given in the query.

Transport Options
=================
Every option, its default and what it does: :class:`airflow_ha.broker.options.BrokerOptions` (the README
has the table). Precedence: defaults < URL query < ``broker_transport_options`` (Airflow's
``[celery_broker_transport_options]``).

Delivery: at-least-once. A publish is acknowledged once a replica holds it (``WAIT``) and the master has
fsynced it (``WAITAOF``, Redis >= 7.2); ``replication_wait_policy`` decides what a shortfall does.
``implements.asynchronous`` is False, so Celery runs its blocking ``synloop`` over
:meth:`Transport.drain_events`, which blocks on sockets (no sleep loop).
"""

from __future__ import annotations

import logging
from queue import Empty
from time import monotonic

import redis.exceptions as rexc
from kombu.transport import virtual
from kombu.utils.json import dumps, loads

from airflow_ha import metrics
from airflow_ha.broker import keys, scripts
from airflow_ha.broker.consumer import Drain
from airflow_ha.broker.errors import BrokerUnavailable
from airflow_ha.broker.health import check_cluster
from airflow_ha.broker.options import BrokerOptions
from airflow_ha.broker.routing import SlotRouter
from airflow_ha.broker.url import ClusterURL, parse

log = logging.getLogger(__name__)


class QoS(virtual.QoS):
    """Prefetch as in kombu; ack/reject/restore also update the queue's unacked bookkeeping in Redis."""

    restore_at_shutdown = True

    def ack(self, delivery_tag):
        # The prefetch slot is freed whatever Redis said: the task is done. An ack the slot's master did not
        # take (an outage past failover_timeout) is kept and sent again (Channel.retry_late_acks); before,
        # Celery logged "Couldn't ack" and the slot stayed taken, so a worker stopped consuming for good.
        try:
            self.channel._ack(delivery_tag)
        finally:
            super().ack(delivery_tag)
            self.channel.connection_wakeup()

    def reject(self, delivery_tag, requeue=False):
        try:
            if requeue:  # a requeue that fails leaves the message unacked in Redis: the sweep returns it
                self.channel._restore_tag(delivery_tag, to_head=False)
            else:
                self.channel._ack(delivery_tag)
        finally:
            self._quick_ack(delivery_tag)
            self.channel.connection_wakeup()

    def restore_unacked(self):
        """Warm shutdown / channel close: every delivered, unacked message goes back to the head.

        One attempt per master, bounded by ``socket_timeout``: on a dead master this must not hold up
        Celery's reconnect for ``failover_timeout`` per message, nor ``socket_timeout`` per message (a
        master that failed once is not asked again). What cannot be restored now stays in the queue's
        unacked hash (and its replica's), so the visibility sweep returns it.
        """
        self._flush()
        errors = []
        failed: dict[str, BaseException] = {}  # master -> why a restore there failed: skip the rest of its
        while self._delivered:
            tag, message = self._delivered.popitem()
            node = self.channel._master_of_tag(tag)
            try:
                if node in failed:
                    raise failed[node]
                self.channel._restore_tag(tag, to_head=True, deadline=0)
            except BaseException as exc:
                if node is not None and isinstance(exc, BrokerUnavailable):
                    failed[node] = exc
                if tag not in self._dirty:
                    errors.append((exc, message))
        self._delivered.clear()
        return errors

    def restore_visible(self, *args, **kwargs):
        self.channel.restore_visible()


class Channel(virtual.Channel):
    QoS = QoS
    supports_fanout = True
    do_restore = True
    from_transport_options = (*virtual.Channel.from_transport_options,)

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        self.opts: BrokerOptions = connection.opts
        self._tag_queue: dict[str, str] = {}
        self._fanout_queues: dict[str, str] = {}  # queue -> fanout exchange
        self._ready: set[str] = set()  # queues to read now (a wake token, a safety read, a new consumer)
        self._probe: set[str] = set()  # ready only for the periodic safety read: look (EXISTS) before reading
        self._more: set[str] = set()  # the last read said more messages remain: read on, no wait needed
        self._noack_queues: set[str] = set()  # consumed with no_ack: no unacked bookkeeping
        self._auto_delete_queues: set[str] = set()  # deleted when this channel closes
        self._rr = 0
        self._remote_types: dict[str, str] = {}
        self._late_acks: dict[str, str] = {}  # delivery tag -> queue: acks an outage held back, in order
        self._qkeys_cache: dict[str, list[str]] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def connection_wakeup(self) -> None:
        conn = self.connection
        if conn is not None:
            conn.wakeup()

    def _step_index(self, message) -> int:
        pri = self._get_message_priority(message, reverse=False)
        steps = self.opts.priority_steps
        return steps.index(keys.step_for(pri, steps))

    def _qkeys(self, queue: str) -> list[str]:
        qkeys = self._qkeys_cache.get(queue)
        if qkeys is None:
            if len(self._qkeys_cache) >= 1024:  # names come and go (reply queues): keep it bounded
                self._qkeys_cache.clear()
            qkeys = self._qkeys_cache[queue] = keys.queue_keys(queue, self.opts.priority_steps)
        return qkeys

    def _has_messages(self, queue, deadline=None) -> bool:
        lists = self._qkeys(queue)[3:]
        return bool(self.connection.on_slot(lists[0], lambda c, _node: c.exists(*lists), deadline=deadline))

    def _script(self, name, queue, args, wait_kind=None, deadline=None):
        return self.connection.run_script(name, self._qkeys(queue), args, wait_kind=wait_kind, deadline=deadline)

    # -- kombu virtual API ---------------------------------------------------------------------------
    def _put(self, queue, message, **kwargs):
        kwargs.pop("_publish_batch", None)
        started = monotonic()
        self._script("put", queue, [self._step_index(message) + 1, dumps(message)], wait_kind="publish")
        metrics.timing("broker.publish", monotonic() - started)

    def _get(self, queue, timeout=None, deadline=None, no_ack=None):
        no_ack = queue in self._noack_queues if no_ack is None else no_ack
        record = "0" if no_ack else "1"
        result = self._script("get", queue, [record], deadline=deadline)
        if not result:
            self._more.discard(queue)
            raise Empty()
        item, more = result
        if int(more):
            self._more.add(queue)
        else:
            self._more.discard(queue)
        redelivered = item[:1] == scripts.REDELIVERED
        message = loads(item[1:] if redelivered else item)
        if redelivered:  # as kombu's redis transport marks a restored message
            metrics.incr("broker.redelivered", queue=queue)
            message.setdefault("headers", {})["redelivered"] = True
            message.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
            message["redelivered"] = True
        tag = message.get("properties", {}).get("delivery_tag")
        if tag and record == "1":
            self._tag_queue[tag] = queue
        return message

    def _ack(self, tag):
        queue = self._tag_queue.pop(tag, None)
        if queue is None:
            return
        try:
            self._script("ack", queue, [tag], wait_kind="ack")
        except BrokerUnavailable as exc:
            self._late_acks[tag] = queue
            log.warning("ack of %s on %r did not reach Redis (%s); sent again once it answers", tag, queue, exc)

    def retry_late_acks(self) -> int:
        """Send the acks an outage held back, one attempt each, oldest first; stops at the first failure
        (the master is still away). Returns how many went through."""
        done = 0
        for tag, queue in list(self._late_acks.items()):
            try:
                self._script("ack", queue, [tag], wait_kind="ack", deadline=0)
            except BrokerUnavailable:
                break
            del self._late_acks[tag]
            done += 1
        if done:
            log.warning("sent %d held-back ack(s); %d still waiting", done, len(self._late_acks))
        return done

    def _master_of_tag(self, tag) -> str | None:
        """Name of the master holding the delivered message's queue, per the slot map (no I/O)."""
        queue = self._tag_queue.get(tag)
        if queue is None or self.connection is None:
            return None
        try:
            return self.connection.router.node_for(keys.wake_list(queue))[1].name
        except Exception:  # no slot map (closed, slot uncovered): restore it one by one
            return None

    def _restore_tag(self, tag, to_head=True, deadline=None):
        queue = self._tag_queue.pop(tag, None)
        if queue is not None:
            self._script("restore", queue, [tag, "1" if to_head else "0"], wait_kind="ack", deadline=deadline)

    def _restore(self, message):
        self._restore_tag(message.delivery_tag, to_head=True)

    def _restore_at_beginning(self, message):
        self._restore_tag(message.delivery_tag, to_head=False)

    def _put_fanout(self, exchange, message, routing_key, **kwargs):
        kwargs.pop("_publish_batch", None)
        chan = keys.fanout_channel(exchange)
        payload = dumps(message)
        self.connection.on_slot(chan, lambda client, _node: client.execute_command("SPUBLISH", chan, payload))

    def _size(self, queue):
        lists = keys.priority_lists(queue, self.opts.priority_steps)

        def size(client, _node):
            pipe = client.pipeline(transaction=False)
            for k in lists:
                pipe.llen(k)
            return sum(pipe.execute())

        return self.connection.on_slot(lists[0], size)

    def _purge(self, queue):
        lists = keys.priority_lists(queue, self.opts.priority_steps)

        def purge(client, _node):
            pipe = client.pipeline(transaction=True)  # one slot: MULTI/EXEC is allowed
            for k in lists:
                pipe.llen(k)
            pipe.delete(*lists)
            return sum(pipe.execute()[:-1])

        return self.connection.on_slot(lists[0], purge)

    def _has_queue(self, queue, **kwargs):
        return self._has_messages(queue)

    def _new_queue(self, queue, auto_delete=False, **kwargs):
        if auto_delete:  # lists spring into existence on first publish; remember what to delete at close
            self._auto_delete_queues.add(queue)

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        self._unbind(queue, exchange, routing_key, pattern)
        self._delete_keys(queue)

    def _unbind(self, queue, exchange, routing_key, pattern) -> None:
        table = keys.binding_table(exchange)
        member = keys.SEP.join([routing_key or "", pattern or "", queue or ""])

        def unbind(client, _node):  # the exchange's type goes with its last binding
            pipe = client.pipeline(transaction=True)  # one slot: MULTI/EXEC is allowed
            pipe.srem(table, member)
            pipe.scard(table)
            _removed, left = pipe.execute()
            if not left:
                client.delete(keys.exchange_type(exchange))

        self.connection.on_slot(table, unbind)

    def _delete_keys(self, queue) -> None:
        self._script("delete", queue, [])
        self._auto_delete_queues.discard(queue)

    def queue_delete(self, queue, if_unused=False, if_empty=False, **kwargs):
        """As kombu's, and the queue's keys go even when this channel knows no binding of it: kombu calls
        ``_delete`` once per binding declared in this process, so a queue on the default exchange, or
        declared by another process, would keep its lists, unacked hash, index and wake tokens."""
        if if_empty and self._size(queue):
            return
        super().queue_delete(queue, if_unused=if_unused, **kwargs)
        self._delete_keys(queue)

    def basic_get(self, queue, no_ack=False, **kwargs):
        """As kombu's; with ``no_ack`` nothing is recorded as unacked (nothing would ever ack it, so the
        visibility sweep would deliver it again)."""
        if not no_ack:
            return super().basic_get(queue, no_ack=False, **kwargs)
        try:
            return self.Message(self._get(queue, no_ack=True), channel=self)
        except Empty:
            return None

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        if self.typeof(exchange).type == "fanout":
            self._fanout_queues[queue] = exchange
        table = keys.binding_table(exchange)
        member = keys.SEP.join([routing_key or "", pattern or "", queue or ""])
        kind = self.typeof(exchange).type

        def bind(client, _node):
            pipe = client.pipeline(transaction=False)
            pipe.sadd(table, member)
            pipe.set(keys.exchange_type(exchange), kind)  # publishers that never declared it find the type
            pipe.execute()

        self.connection.on_slot(table, bind)

    def typeof(self, exchange, default="direct"):
        if exchange and exchange not in self.state.exchanges:
            kind = self._remote_types.get(exchange)
            if kind is None:
                key = keys.exchange_type(exchange)
                raw = self.connection.on_slot(key, lambda c, _node: c.get(key))
                kind = raw.decode() if raw else None
                if kind is not None:
                    self._remote_types[exchange] = kind
            if kind in self.exchange_types:
                return self.exchange_types[kind]
        return super().typeof(exchange, default)

    def get_table(self, exchange):
        table = keys.binding_table(exchange)
        values = self.connection.on_slot(table, lambda c, _node: c.smembers(table))
        return [tuple(_split(val)) for val in values]

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        ret = super().basic_consume(queue, no_ack, *args, **kwargs)
        if no_ack:
            self._noack_queues.add(queue)
        else:
            self._noack_queues.discard(queue)
        self._ready.add(queue)
        if self.connection is not None:
            self.connection.subscriptions_changed()
        return ret

    def basic_cancel(self, consumer_tag):
        queue = self._tag_to_queue.get(consumer_tag)
        ret = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._ready.discard(queue)
            self._noack_queues.discard(queue)
            self._probe.discard(queue)
            self._more.discard(queue)
        if self.connection is not None:
            self.connection.subscriptions_changed()
        return ret

    def deliver_one(self) -> bool:
        """GET one message from a ready consumed queue (round robin) and deliver it; False if none.

        A queue stays ready while its last read said more messages remain (read on, no wait needed); an
        emptied queue is waited on with BLPOP again. A queue ready only for the periodic safety read (its
        BLPOP timed out: no token came) is looked at with one EXISTS first, and read only if it holds any.
        """
        self._ready.difference_update(self._fanout_queues)  # fanout arrives over pub/sub, never read here
        queues = [q for q in self._active_queues if q not in self._fanout_queues]
        if not queues:
            return False
        n = len(queues)
        error = None
        for i in range(n):
            queue = queues[(self._rr + i) % n]
            if queue not in self._ready:
                continue
            try:
                if queue in self._probe:
                    self._probe.discard(queue)
                    if not self._has_messages(queue, deadline=0):
                        self._ready.discard(queue)
                        continue
                message = self._get(queue, deadline=0)
            except Empty:
                self._ready.discard(queue)
                continue
            except BrokerUnavailable as exc:  # its master is failing over: serve the other queues meanwhile
                error = exc
                continue
            if queue not in self._more:
                self._ready.discard(queue)
            self._rr = (self._rr + i + 1) % n
            self.connection._deliver(message, queue)
            return True
        if error is not None:
            raise error
        return False

    def restore_visible(self) -> int:
        restored = 0
        for queue in set(self._active_queues) - set(self._fanout_queues):
            restored += int(
                self._script(
                    "sweep",
                    queue,
                    [self.opts.visibility_timeout, self.opts.max_restore_batch],
                    wait_kind="ack",
                    deadline=0,
                )
                or 0
            )
        if restored:
            log.warning(
                "restored %d unacked message(s) older than visibility_timeout=%gs",
                restored,
                self.opts.visibility_timeout,
            )
        return restored

    def close(self):
        """Cancel, restore what is unacked (one attempt each), delete this channel's auto-delete queues
        (Celery's pidbox and reply queues: nothing of them outlives the process), as AMQP would."""
        if not self.closed and self.connection is not None and self.connection.router.cluster is not None:
            if self._late_acks:
                self.retry_late_acks()
            if self._late_acks:
                log.warning(
                    "broker: %d ack(s) never reached Redis; their messages stay unacked until the visibility "
                    "sweep (a re-run of a finished Airflow task is refused by Airflow)",
                    len(self._late_acks),
                )
            for queue in list(self._auto_delete_queues):
                try:
                    for exchange, routing_key, _args in self.state.queue_bindings(queue):
                        meta = self.typeof(exchange).prepare_bind(queue, exchange, routing_key, _args)
                        self._unbind(queue, exchange, meta[0], meta[1])
                    self._delete_keys(queue)
                except BrokerUnavailable as exc:  # the master is away: leftover keys are empty or expire
                    log.warning("broker: could not delete auto-delete queue %r at close: %s", queue, exc)
        super().close()
        self._ready.clear()
        self._probe.clear()
        self._more.clear()


def _split(val):
    text = val.decode() if isinstance(val, bytes) else val
    return text.split(keys.SEP)


class Transport(virtual.Transport):
    """kombu's connection object: the slot router, the drain loop and kombu's hooks."""

    Channel = Channel
    driver_type = "redis"
    driver_name = "redis-cluster"
    default_port = 6379
    can_parse_url = True
    polling_interval = None
    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False,
    )
    connection_errors = (
        *virtual.Transport.connection_errors,
        rexc.ConnectionError,
        rexc.TimeoutError,
        rexc.ClusterDownError,
        rexc.RedisClusterException,
        BrokerUnavailable,
        OSError,
    )
    channel_errors = (*virtual.Transport.channel_errors, rexc.ResponseError, rexc.DataError)
    # The same errors kombu assumes recoverable for a transport that does not say (connection_errors +
    # channel_errors; no channel-level recovery), said explicitly: kombu's ``ensure`` (Celery's publish
    # with its retry policy) then retries up to the policy's max_retries. Without them it gives up after one
    # reconnect, so a publish the WAIT policy refused twice in a row failed its Airflow task at once.
    recoverable_connection_errors = (*connection_errors, *channel_errors)
    recoverable_channel_errors = ()

    def __init__(self, client, **kwargs):
        self.url = self._url_of(client)
        self.opts = BrokerOptions.merged(self.url.options, client.transport_options)
        super().__init__(client, **kwargs)
        self.router = SlotRouter(self.url, self.opts)
        self.drain: Drain | None = None

    # -- URL -----------------------------------------------------------------------------------------
    @staticmethod
    def _url_of(client) -> ClusterURL:
        hostname = client.hostname or ""
        if "://" not in hostname:  # Connection(transport="rediscluster", hostname="h1:1,h2:2", password=...)
            auth = f"{client.userid or ''}:{client.password or ''}@" if (client.userid or client.password) else ""
            port = f":{client.port}" if client.port and "," not in hostname and ":" not in hostname else ""
            hostname = f"rediscluster://{auth}{hostname or 'localhost'}{port}"
        return parse(hostname)

    def as_uri(self, uri: str, include_password=False, mask="**") -> str:
        try:
            return parse(uri).as_uri(include_password=include_password, mask=mask)
        except ValueError:
            return "rediscluster://(invalid URL)"

    # -- connection lifecycle ------------------------------------------------------------------------
    def establish_connection(self):
        check_cluster(self.url, self.opts)
        self.router.connect()
        if self.drain is None:
            self.drain = Drain(self, self.router)
        return super().establish_connection()

    def close_connection(self, connection):
        super().close_connection(connection)
        if self.drain is not None:
            self.drain.close()
            self.drain = None
        self.router.close()

    def verify_connection(self, connection):
        return self.router.cluster is not None

    @property
    def cluster(self):
        return self.router.cluster

    def wakeup(self) -> None:
        if self.drain is not None:
            self.drain.wakeup()

    def subscriptions_changed(self) -> None:
        if self.drain is not None:
            self.drain.subscriptions_changed()

    # -- what channels call --------------------------------------------------------------------------
    def on_slot(self, key, fn, deadline=None):
        return self.router.on_slot(key, fn, deadline=deadline)

    def run_script(self, name, keys_, args, wait_kind=None, deadline=None):
        return self.router.run_script(name, keys_, args, wait_kind=wait_kind, deadline=deadline)

    def drain_events(self, connection, timeout=None):
        if self.drain is None:
            raise BrokerUnavailable("broker connection is closed")
        self.drain.drain_events(timeout)

    @property
    def default_connection_params(self):
        return {"port": self.default_port, "hostname": "localhost"}


__all__ = ["Channel", "QoS", "Transport", "check_cluster"]
