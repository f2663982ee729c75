"""kombu transport for Redis Cluster (``rediscluster://``), laid out like ``kombu/transport/redis.py``.

* :class:`Channel` owns queues, bindings and QoS. Every per-queue state change is one Lua script on the
  keys of ONE queue (one hash slot, see :mod:`airflow_ha.broker.keys`), run on the master that owns the
  slot through that node's own client, followed on the SAME connection (a pipeline) by ``WAIT``:

  - publish: ``LPUSH`` on the priority list + ``SPUBLISH`` on the queue's sharded notify channel;
  - get: ``RPOP`` over the priority lists in serving order (step 0 first, as kombu's redis transport)
    and, in the same script, record the message in the queue's unacked hash + index zset;
  - ack: ``HDEL`` + ``ZREM``; reject/requeue, warm-shutdown restore and the visibility-timeout sweep
    move the message back atomically (a message is always in a list or in the unacked hash).

* :class:`Transport` owns the cluster client and the drain. Consumers do not poll: they ``SSUBSCRIBE``
  (Redis 7 sharded pub/sub) to the notify channel of every consumed queue, one pub/sub connection per
  master, and ``select()`` on those sockets plus a wake-up pipe written on ack (a freed prefetch slot).
  A safety sweep every ``poll_sweep_interval`` (1 s) tries every consumed queue, covering notifications
  lost while a master fails over. Fanout (broadcast, Celery remote control) uses ``SPUBLISH`` on a
  per-exchange channel, delivered only to live subscribers, as kombu's redis transport does.
  ``implements.asynchronous`` is False, so Celery runs its blocking ``synloop`` over
  :meth:`Transport.drain_events`, which blocks correctly (no sleep loop).

Failover: MOVED/ASK, CLUSTERDOWN, TRYAGAIN, READONLY, connection and timeout errors refresh the slot map
and retry with backoff until ``failover_timeout`` (30 s) has passed; then :class:`BrokerUnavailable`
(a connection error) lets kombu/Celery reconnect. A retried publish may duplicate a message, a retried
get leaves the first pop in the unacked hash, so the visibility sweep returns it: at-least-once.

Asynchronous replication: a master can acknowledge a write and die before its replica has it; the
promoted replica then lacks it. Mitigation: after each publish (and ack) the transport runs
``WAIT replication_wait_replicas replication_wait_timeout_ms`` (defaults 1 and 500 ms) on the same
connection, so the call returns only once a replica holds the write. Trade-off: every publish/ack
costs one replication round trip (sub-millisecond on a LAN; up to the timeout when a replica lags)
in exchange for no acknowledged publish lost on failover; ``replication_wait_replicas=0`` turns it off
(lowest latency, a failover can lose the last writes). When fewer replicas ack in time,
``replication_wait_policy`` decides. ``warn`` (default, availability first): log and carry on; when the
master has fewer in-sync replicas than asked (e.g. right after a failover, before the old master
rejoins) no WAIT can help, so it also skips WAIT on that node for 5 s instead of paying the timeout on
every write: such writes are unprotected, as with ``redis://``. ``raise`` (consistency first): the call
raises :class:`ReplicationWaitError` (a connection error, not retried by the transport since the write
did reach the master): the publisher knows the message is unprotected; Celery's publish retry may then
duplicate it, never silently lose it; a master without replicas refuses to acknowledge publishes.
``auto`` tells the two shortfalls apart: a replica that the master still counts as connected but that did
not acknowledge is what a network partition looks like from the cut-off side (the majority is promoting
that replica; what this master takes now is dropped when it rejoins as a replica), so the publish
raises as with ``raise``; a master with no connected replica (its replica died, or it is the freshly
promoted one) cannot be helped by waiting, so it carries on as with ``warn``. Measured on Kubernetes
(tests/k8s, split brain): ``auto`` loses nothing like ``raise``, without refusing every publish on the
majority side until the cut-off node rejoins.
Consumer bookkeeping (ack, requeue, visibility restore) waits too but only ever warns: an ack or restore
lost in a failover leaves the message in the unacked hash, so it runs again, it is never lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import threading
from queue import Empty
from time import monotonic, sleep

import redis
import redis.exceptions as rexc
from kombu.transport import virtual
from kombu.utils.json import dumps, loads
from redis.cluster import ClusterNode, RedisCluster

from airflow_ha.broker import keys, scripts
from airflow_ha.broker.errors import (
    BrokerAuthError,
    BrokerClusterError,
    BrokerConfigError,
    BrokerUnavailable,
    ReplicationWaitError,
)
from airflow_ha.broker.options import BrokerOptions
from airflow_ha.broker.url import ClusterURL, parse

log = logging.getLogger(__name__)

# Errors a failover produces; all mean "refresh the slot map, back off, retry".
RETRYABLE = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
    rexc.AskError,  # MovedError is a subclass
    rexc.ReadOnlyError,
    rexc.SlotNotCoveredError,
    rexc.MasterDownError,
    rexc.BusyLoadingError,
    OSError,
)
_SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in scripts.ALL.items()}
TOTAL_SLOTS = 16384


def _not_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (rexc.AuthenticationError, rexc.AuthorizationError, BrokerConfigError))


def check_cluster(url: ClusterURL, opts: BrokerOptions) -> dict:
    """Reach a seed, authenticate, and require ``cluster_state:ok`` with every slot assigned.

    Seeds are asked in turn until one says ok: a node on the cut-off side of a partition, or any node
    during a failover, reports ``cluster_state:fail`` while the rest of the cluster serves. Raises
    :class:`BrokerAuthError` (wrong credentials) or :class:`BrokerClusterError` (slots no node owns),
    which never heal by waiting, else :class:`BrokerUnavailable` (a connection error: Celery retries),
    each with a message naming the problem; bounded by ``socket_connect_timeout`` per seed (no hang).
    """
    failures, failing, unassigned = [], [], []
    for host, port in url.seeds:
        client = redis.Redis(
            host=host,
            port=port,
            socket_connect_timeout=opts.socket_connect_timeout,
            socket_timeout=opts.socket_connect_timeout,
            retry_on_timeout=False,
            retry=None,
            decode_responses=True,
            **url.redis_kwargs(),
        )
        try:
            client.ping()
            info = client.execute_command("CLUSTER INFO")
        except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
            raise BrokerAuthError(
                f"Redis Cluster seed {host}:{port} refused the credentials in the broker URL ({exc}): "
                "check the password (and user) in the rediscluster:// URL"
            ) from None
        except rexc.ResponseError as exc:
            text = str(exc)
            if "NOAUTH" in text or "WRONGPASS" in text or "AUTH" in text.upper():
                raise BrokerAuthError(
                    f"Redis Cluster seed {host}:{port} requires a password that the broker URL does not give "
                    f"({exc}): use rediscluster://:PASSWORD@host:port,..."
                ) from None
            if "cluster support disabled" in text:
                raise BrokerClusterError(
                    f"{host}:{port} is a plain Redis server, not a cluster node (cluster-enabled no): "
                    "use redis:// for it, or point rediscluster:// at cluster nodes"
                ) from None
            failures.append(f"{host}:{port} ({exc})")
            continue
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            failures.append(f"{host}:{port} ({exc.__class__.__name__}: {exc})")
            continue
        finally:
            client.close()
        if isinstance(info, str):
            info = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        assigned = int(info.get("cluster_slots_assigned", 0))
        if info.get("cluster_state") == "ok" and assigned >= TOTAL_SLOTS:
            return info
        state = (
            f"cluster_state={info.get('cluster_state')}, {assigned} of {TOTAL_SLOTS} slots assigned, "
            f"{info.get('cluster_slots_fail', '?')} failing"
        )
        if assigned < TOTAL_SLOTS:  # slots no node owns: the cluster never heals this by itself
            unassigned.append((f"{host}:{port}", state))
        else:  # every slot has an owner: a failover or a partition (this node cut off) is under way
            failing.append(f"{host}:{port} ({state})")
    if unassigned:
        where, state = unassigned[0]
        raise BrokerClusterError(
            f"Redis Cluster at {where} is not serving every slot: {state}; fix the cluster (uncovered slots) "
            "before starting workers"
        )
    if failing:
        raise BrokerUnavailable(
            "Redis Cluster not serving yet (a failover or a partition under way; retried): " + "; ".join(failing)
        )
    raise BrokerUnavailable(
        f"no Redis Cluster seed node reachable within {opts.socket_connect_timeout:g}s each: " + "; ".join(failures)
    )


class QoS(virtual.QoS):
    """Prefetch as in kombu; ack/reject/restore also update the queue's unacked bookkeeping in Redis."""

    restore_at_shutdown = True

    def ack(self, delivery_tag):
        self.channel._ack(delivery_tag)
        super().ack(delivery_tag)
        self.channel.connection_wakeup()

    def reject(self, delivery_tag, requeue=False):
        if requeue:
            self.channel._restore_tag(delivery_tag, to_head=False)
        else:
            self.channel._ack(delivery_tag)
        self._quick_ack(delivery_tag)
        self.channel.connection_wakeup()

    def restore_unacked(self):
        """Warm shutdown / channel close: every delivered, unacked message goes back to the head."""
        self._flush()
        errors = []
        while self._delivered:
            tag, message = self._delivered.popitem()
            try:
                self.channel._restore_tag(tag, to_head=True)
            except BaseException as exc:
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
        self._ready: set[str] = set()
        self._rr = 0
        self._remote_types: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def cluster(self) -> RedisCluster:
        return self.connection.cluster

    def connection_wakeup(self) -> None:
        conn = self.connection
        if conn is not None:
            conn.wakeup()

    def _step_index(self, message) -> int:
        pri = self._get_message_priority(message, reverse=False)
        steps = self.opts.priority_steps
        return steps.index(keys.step_for(pri, steps))

    def _qkeys(self, queue: str) -> list[str]:
        return keys.queue_keys(queue, self.opts.priority_steps)

    def _script(self, name, queue, args, wait_kind=None, deadline=None):
        return self.connection.run_script(name, self._qkeys(queue), args, wait_kind=wait_kind, deadline=deadline)

    # -- kombu virtual API ---------------------------------------------------------------------------
    def _put(self, queue, message, **kwargs):
        kwargs.pop("_publish_batch", None)
        self._script(
            "put",
            queue,
            [self._step_index(message) + 1, dumps(message), keys.notify_channel(queue)],
            wait_kind="publish",
        )

    def _get(self, queue, timeout=None, deadline=None):
        item = self._script("get", queue, [], deadline=deadline)
        if not item:
            raise Empty()
        message = loads(item)
        tag = message.get("properties", {}).get("delivery_tag")
        if tag:
            self._tag_queue[tag] = queue
        return message

    def _ack(self, tag):
        queue = self._tag_queue.pop(tag, None)
        if queue is not None:
            self._script("ack", queue, [tag], wait_kind="ack")

    def _restore_tag(self, tag, to_head=True):
        queue = self._tag_queue.pop(tag, None)
        if queue is not None:
            self._script("restore", queue, [tag, "1" if to_head else "0", keys.notify_channel(queue)], wait_kind="ack")

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
        lists = keys.priority_lists(queue, self.opts.priority_steps)
        return bool(self.connection.on_slot(lists[0], lambda c, _node: c.exists(*lists)))

    def _new_queue(self, queue, **kwargs):
        pass  # lists spring into existence on first publish

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        table = keys.binding_table(exchange)
        member = keys.SEP.join([routing_key or "", pattern or "", queue or ""])
        self.connection.on_slot(table, lambda c, _node: c.srem(table, member))
        lists = keys.priority_lists(queue, self.opts.priority_steps)
        self.connection.on_slot(lists[0], lambda c, _node: c.delete(*lists))

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

    def basic_consume(self, queue, *args, **kwargs):
        ret = super().basic_consume(queue, *args, **kwargs)
        self._ready.add(queue)
        if self.connection is not None:
            self.connection.subscriptions_changed()
        return ret

    def basic_cancel(self, consumer_tag):
        queue = self._tag_to_queue.get(consumer_tag)
        ret = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._ready.discard(queue)
        if self.connection is not None:
            self.connection.subscriptions_changed()
        return ret

    def deliver_one(self) -> bool:
        """GET one message from a ready consumed queue (round robin) and deliver it; False if none."""
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
                message = self._get(queue, deadline=0)
            except Empty:
                self._ready.discard(queue)
                continue
            except BrokerUnavailable as exc:  # its master is failing over: serve the other queues meanwhile
                error = exc
                continue
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
                    [self.opts.visibility_timeout, self.opts.max_restore_batch, keys.notify_channel(queue)],
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
        super().close()
        self._ready.clear()


def _split(val):
    text = val.decode() if isinstance(val, bytes) else val
    return text.split(keys.SEP)


class Transport(virtual.Transport):
    """Connections, scripts on the slot's master (+ WAIT), failover retries and the blocking drain."""

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

    def __init__(self, client, **kwargs):
        self.url = self._url_of(client)
        merged = {**self.url.options, **(client.transport_options or {})}
        self.opts = BrokerOptions.from_mapping(merged)
        super().__init__(client, **kwargs)
        self.cluster: RedisCluster | None = None
        self._pubsubs: dict[str, redis.client.PubSub] = {}  # node name -> pubsub
        self._sub_node: dict[str, str] = {}  # channel -> node name it is subscribed on
        self._subs_dirty = True
        self._resubscribe_at = 0.0
        self._broken_since: float | None = None
        self._next_poll = 0.0
        self._next_visibility = 0.0
        self._no_wait_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._chan_rr = 0

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
        kwargs = self.url.redis_kwargs()
        try:
            self.cluster = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.url.seeds],
                socket_timeout=self.opts.socket_timeout,
                socket_connect_timeout=self.opts.socket_connect_timeout,
                require_full_coverage=True,
                **kwargs,
            )
        except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
            raise BrokerAuthError(f"Redis Cluster refused the broker URL's credentials: {exc}") from None
        except rexc.RedisClusterException as exc:
            raise BrokerClusterError(f"Redis Cluster not usable: {exc}") from None
        return super().establish_connection()

    def close_connection(self, connection):
        super().close_connection(connection)
        for ps in self._pubsubs.values():
            with contextlib.suppress(Exception):
                ps.close()
        self._pubsubs.clear()
        self._sub_node.clear()
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def verify_connection(self, connection):
        return self.cluster is not None

    def wakeup(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    # -- running commands on the slot's master -------------------------------------------------------
    def refresh_topology(self) -> None:
        with self._lock:
            try:
                self.cluster.nodes_manager.initialize()
            except (*RETRYABLE, rexc.RedisClusterException) as exc:
                log.debug("slot map refresh failed (will retry): %s", exc)

    def on_slot(self, key: str, fn, deadline: float | None = None):
        """``fn(node_client)`` on the master owning ``key``'s slot, retried through failovers.

        ``deadline`` is seconds to keep retrying (default ``failover_timeout``; 0: one attempt).
        """
        if self.cluster is None:
            raise BrokerUnavailable("broker connection is closed")
        limit = monotonic() + (self.opts.failover_timeout if deadline is None else deadline)
        delay = 0.05
        while True:
            try:
                node = self.cluster.get_node_from_key(key)
                client = self.cluster.get_redis_connection(node)
                return fn(client, node)
            except ReplicationWaitError:
                raise  # the write happened on the master: re-running it would duplicate, the caller decides
            except RETRYABLE as exc:
                if _not_retryable(exc):
                    raise
                if monotonic() >= limit:
                    raise BrokerUnavailable(
                        f"Redis Cluster did not serve slot of {key!r} within failover_timeout="
                        f"{self.opts.failover_timeout:g}s: {exc.__class__.__name__}: {exc}"
                    ) from exc
                log.warning("broker: %s on %r, refreshing slot map and retrying", exc.__class__.__name__, key)
                sleep(delay)
                delay = min(delay * 2, 1.0)
                self.refresh_topology()

    def run_script(self, name, keys_, args, wait_kind=None, deadline=None):
        replicas = self.opts.wait_for(wait_kind) if wait_kind else 0

        def run(client, node):
            wait = replicas and self._no_wait_until.get(node.name, 0) < monotonic()
            try:
                return self._eval(client, node, name, keys_, args, wait, sha=True, kind=wait_kind)
            except rexc.NoScriptError:
                return self._eval(client, node, name, keys_, args, wait, sha=False, kind=wait_kind)

        return self.on_slot(keys_[0], run, deadline=deadline)

    def _eval(self, client, node, name, keys_, args, wait, sha, kind=None):
        pipe = client.pipeline(transaction=False)
        if sha:
            pipe.evalsha(_SHAS[name], len(keys_), *keys_, *args)
        else:
            pipe.eval(scripts.ALL[name], len(keys_), *keys_, *args)
        if wait:
            pipe.execute_command("WAIT", self.opts.replication_wait_replicas, self.opts.replication_wait_timeout_ms)
        results = pipe.execute()
        if wait and int(results[1]) < self.opts.replication_wait_replicas:
            self._wait_shortfall(client, node, int(results[1]), kind)
        return results[0]

    def _wait_shortfall(self, client, node, acked: int, kind: str | None) -> None:
        wanted = self.opts.replication_wait_replicas
        info = client.info("replication")
        connected = sum(
            1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )
        policy = self.opts.replication_wait_policy
        if kind == "publish" and (policy == "raise" or (policy == "auto" and connected >= wanted)):
            why = "" if policy == "raise" else "; its replicas are connected but silent, as across a partition"
            raise ReplicationWaitError(
                f"broker: only {acked} of {wanted} replica(s) of {node.name} acknowledged a write within "
                f"{self.opts.replication_wait_timeout_ms} ms ({connected} in sync): the write is on the master "
                f"only and could be lost in a failover (replication_wait_policy={policy}{why})"
            )
        if connected < wanted:
            log.warning(
                "broker: master %s has %d in-sync replica(s) < replication_wait_replicas=%d: writes there are "
                "not protected against loss on failover; skipping WAIT on it for 5s",
                node.name,
                connected,
                wanted,
            )
            self._no_wait_until[node.name] = monotonic() + 5.0
            return
        log.warning(
            "broker: only %d of %d replica(s) of %s acknowledged a write within %d ms: it can be lost if %s fails now",
            acked, wanted, node.name, self.opts.replication_wait_timeout_ms, node.name,
        )  # fmt: skip

    # -- consuming -----------------------------------------------------------------------------------
    def subscriptions_changed(self) -> None:
        self._subs_dirty = True
        self._next_poll = 0.0
        self.wakeup()

    def _wanted_channels(self) -> dict[str, list[tuple[Channel, str, bool]]]:
        wanted: dict[str, list] = {}
        for channel in self.channels:
            for queue in channel._active_queues:
                exchange = channel._fanout_queues.get(queue)
                if exchange is not None:
                    wanted.setdefault(keys.fanout_channel(exchange), []).append((channel, queue, True))
                else:
                    wanted.setdefault(keys.notify_channel(queue), []).append((channel, queue, False))
        return wanted

    def _drop_pubsub(self, node_name: str) -> None:
        ps = self._pubsubs.pop(node_name, None)
        if ps is not None:
            with contextlib.suppress(Exception):
                ps.close()
        for chan, name in list(self._sub_node.items()):
            if name == node_name:
                del self._sub_node[chan]
        self._subs_dirty = True

    def _ensure_subscriptions(self) -> None:
        if not self._subs_dirty or monotonic() < self._resubscribe_at:
            return
        self._wanted = wanted = self._wanted_channels()
        try:
            by_node: dict[str, list[str]] = {}
            nodes = {}
            for chan in wanted:
                node = self.cluster.get_node_from_key(chan)
                nodes[node.name] = node
                by_node.setdefault(node.name, []).append(chan)
            # unsubscribe what is no longer wanted or moved elsewhere
            for chan, name in list(self._sub_node.items()):
                if chan not in wanted or chan not in by_node.get(name, ()):
                    ps = self._pubsubs.get(name)
                    del self._sub_node[chan]
                    if ps is not None:
                        ps.sunsubscribe(chan)  # one channel per command: a command's channels must share a slot
            for name, chans in by_node.items():
                new = [c for c in chans if self._sub_node.get(c) != name]
                if not new:
                    continue
                ps = self._pubsubs.get(name)
                if ps is None:
                    ps = self._pubsubs[name] = self.cluster.get_redis_connection(nodes[name]).pubsub()
                for c in new:  # SSUBSCRIBE of several channels needs them in one slot: one command each
                    ps.ssubscribe(c)
                    self._sub_node[c] = name
            self._subs_dirty = False
            self._broken_since = None
        except RETRYABLE as exc:
            self._broken(exc)
        # subscriptions (re)made: anything published before them is found by trying every queue now
        self._next_poll = 0.0

    def _broken(self, exc: BaseException) -> None:
        now = monotonic()
        if self._broken_since is None:
            self._broken_since = now
        if now - self._broken_since > self.opts.failover_timeout:
            raise BrokerUnavailable(
                f"Redis Cluster unusable for more than failover_timeout={self.opts.failover_timeout:g}s: {exc}"
            ) from exc
        log.warning("broker: %s: %s; refreshing slot map", exc.__class__.__name__, exc)
        self._resubscribe_at = now + 0.25
        for name in list(self._pubsubs):
            self._drop_pubsub(name)
        self._subs_dirty = True
        self.refresh_topology()

    def _read_notifications(self) -> bool:
        delivered = False
        wanted = getattr(self, "_wanted", {})
        for name, ps in list(self._pubsubs.items()):
            try:
                while True:
                    msg = ps.get_message(ignore_subscribe_messages=True, timeout=0.0)
                    if msg is None:
                        break
                    if msg.get("type") not in ("smessage", "message"):
                        continue
                    chan = msg["channel"].decode() if isinstance(msg["channel"], bytes) else msg["channel"]
                    for channel, queue, fanout in wanted.get(chan, ()):
                        if fanout:
                            if queue in channel._active_queues:
                                self._deliver(loads(msg["data"]), queue)
                                delivered = True
                        else:
                            channel._ready.add(queue)
            except (*RETRYABLE, rexc.PubSubError, rexc.ResponseError) as exc:
                log.warning("broker: pub/sub connection to %s lost (%s); resubscribing", name, exc)
                self._drop_pubsub(name)
                self.refresh_topology()
                self._next_poll = 0.0
                self._resubscribe_at = monotonic() + 0.25  # back off: never spin on a failing node
        return delivered

    def _drain_once(self) -> bool:
        self._ensure_subscriptions()
        if self._read_notifications():
            return True
        now = monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.opts.poll_sweep_interval
            for channel in self.channels:
                channel._ready.update(q for q in channel._active_queues if q not in channel._fanout_queues)
        if now >= self._next_visibility:
            self._next_visibility = now + self.opts.sweep_interval
            for channel in self.channels:
                if channel._active_queues:
                    try:
                        channel.restore_visible()
                    except BrokerUnavailable as exc:
                        self._broken(exc)
        channels = [c for c in self.channels if c._consumers and c._ready]
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
                self._broken(exc)
        return False

    def drain_events(self, connection, timeout=None):
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self._drain_once():
                return
            now = monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError()
            wait = max(self._next_poll - now, 0.0)
            if deadline is not None:
                wait = min(wait, deadline - now)
            if self._subs_dirty:
                wait = min(wait, 0.2)
            self._wait(wait)

    def _wait(self, timeout: float) -> None:
        fds = [self._wake_r] if self._wake_r >= 0 else []
        for ps in self._pubsubs.values():
            conn = ps.connection
            sock = getattr(conn, "_sock", None) if conn is not None else None
            if sock is not None:
                fds.append(sock)
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except (OSError, ValueError):  # a socket closed under us: the next read reports it
            return
        if self._wake_r in readable:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except (BlockingIOError, OSError):
                pass

    @property
    def default_connection_params(self):
        return {"port": self.default_port, "hostname": "localhost"}


__all__ = ["Channel", "QoS", "Transport", "check_cluster"]
