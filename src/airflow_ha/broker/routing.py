"""Commands on the master that owns a key's slot, retried through failovers, with the replication wait.

:class:`SlotRouter` owns the ``RedisCluster`` client (used for its slot map and per-node clients only:
every queue operation is one Lua script on one queue's slot, run on that slot's master through the
node's own client, so a script and the ``WAIT`` after it share a connection — ``WAIT`` counts the writes
of its own connection).

Errors a failover or a reshard produces (MOVED/ASK, CLUSTERDOWN, TRYAGAIN, READONLY, connection and timeout
errors) refresh the slot map and retry with backoff until ``failover_timeout`` has passed; then
:class:`BrokerUnavailable` (a connection error) lets kombu/Celery reconnect. A MOVED answer is retried
at once, even for a single-attempt call: it names the new owner, so there is nothing to wait for.
A retried publish may duplicate a message; a retried get leaves the first pop in the unacked hash, so
the visibility sweep returns it: at-least-once.

After a write the pipeline also runs ``WAIT replicas timeout`` (a replica holds the write) and, where the
node runs Redis >= 7.2 with ``appendonly yes``, ``WAITAOF 1 0 timeout`` (the write is in the master's
own fsynced AOF): a master that crashes and is restarted before ``cluster-node-timeout`` reloads its AOF
and its replicas resync from it, so a write that was only in memory would be gone from every copy.
With ``appendfsync always`` (what the chart configures) ``WAITAOF`` returns at once; with ``everysec``
it waits for the next fsync (up to a second, bounded by ``replication_wait_timeout_ms``). A shortfall is
judged by :func:`airflow_ha.broker.replication.judge`.

What a failover looks like from here is counted in :mod:`airflow_ha.metrics` (``broker.*``): slot-map
reloads and the master changes they found, retries by error, how long a retried command stalled, WAIT
shortfalls and refusals.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from time import monotonic, sleep

import redis.exceptions as rexc
from redis.cluster import ClusterNode, RedisCluster

from airflow_ha import metrics
from airflow_ha.broker import scripts
from airflow_ha.broker.errors import (
    BrokerAuthError,
    BrokerConfigError,
    BrokerUnavailable,
    ReplicationWaitError,
)
from airflow_ha.broker.options import BrokerOptions
from airflow_ha.broker.replication import judge
from airflow_ha.broker.url import ClusterURL

log = logging.getLogger(__name__)

# Errors a failover or reshard produces; all mean "refresh the slot map, back off, retry".
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
SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in scripts.ALL.items()}
MAX_MOVED_HOPS = 5


def not_retryable(exc: BaseException) -> bool:
    return isinstance(exc, (rexc.AuthenticationError, rexc.AuthorizationError, BrokerConfigError))


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


class SlotRouter:
    def __init__(self, url: ClusterURL, opts: BrokerOptions):
        self.url = url
        self.opts = opts
        self.cluster: RedisCluster | None = None
        self._lock = threading.Lock()
        self._skip_wait_until: dict[tuple[str, str], float] = {}  # (node, kind) -> monotonic time
        self._waitaof: dict[str, bool] = {}  # node -> runs WAITAOF (Redis >= 7.2 with appendonly yes)

    # -- lifecycle -----------------------------------------------------------------------------------
    def connect(self) -> None:
        try:
            self.cluster = RedisCluster(
                startup_nodes=[ClusterNode(h, p) for h, p in self.url.seeds],
                socket_timeout=self.opts.socket_timeout,
                socket_connect_timeout=self.opts.socket_connect_timeout,
                require_full_coverage=True,
                **self.url.redis_kwargs(),
            )
        except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
            raise BrokerAuthError(f"Redis Cluster refused the broker URL's credentials: {exc}") from None
        except (rexc.RedisClusterException, *RETRYABLE) as exc:
            # "cannot be connected", a slot map in flux: the cluster is starting or failing over
            raise BrokerUnavailable(f"Redis Cluster not usable yet (retried): {exc}") from None

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def refresh(self) -> None:
        with self._lock:
            before = self._masters()
            try:
                self.cluster.nodes_manager.initialize()
            except (*RETRYABLE, rexc.RedisClusterException) as exc:
                log.debug("slot map refresh failed (will retry): %s", exc)
                return
            metrics.incr("broker.slot_map_refreshes")
            if before and self._masters() != before:
                metrics.incr("broker.master_changes")

    def _masters(self) -> dict[int, str]:
        """slot -> its master's name, per the slot map this client holds."""
        if self.cluster is None:
            return {}
        return {slot: nodes[0].name for slot, nodes in self.cluster.nodes_manager.slots_cache.items() if nodes}

    def node_for(self, key: str):
        """(node client, node) of the master owning ``key``'s slot, per the current slot map."""
        if self.cluster is None:
            raise BrokerUnavailable("broker connection is closed")
        node = self.cluster.get_node_from_key(key)
        return self.cluster.get_redis_connection(node), node

    # -- commands ------------------------------------------------------------------------------------
    def on_slot(self, key: str, fn, deadline: float | None = None):
        """``fn(node_client, node)`` on the master owning ``key``'s slot, retried through failovers.

        ``deadline`` is seconds to keep retrying (default ``failover_timeout``; 0: one attempt, plus the
        hops a MOVED answer asks for).
        """
        budget = self.opts.failover_timeout if deadline is None else deadline
        limit = monotonic() + budget
        delay = 0.05
        hops = 0
        first_error: float | None = None
        while True:
            try:
                client, node = self.node_for(key)
                result = fn(client, node)
                if first_error is not None:
                    metrics.timing("broker.stall", monotonic() - first_error)
                return result
            except ReplicationWaitError:
                raise  # the write happened on the master: re-running it would duplicate, the caller decides
            except RETRYABLE as exc:
                if not_retryable(exc):
                    raise
                metrics.incr("broker.retries", error=type(exc).__name__)
                if first_error is None:
                    first_error = monotonic()
                if isinstance(exc, rexc.MovedError) and hops < MAX_MOVED_HOPS:
                    hops += 1  # the slot has a new owner (failover done, or resharded): go there now
                    self.refresh()
                    continue
                if monotonic() >= limit:
                    within = f"{budget:g}s" if deadline else "one try"
                    if deadline is None:
                        within = f"failover_timeout={budget:g}s"
                    raise BrokerUnavailable(
                        f"Redis Cluster did not serve slot of {key!r} within {within}: {exc.__class__.__name__}: {exc}"
                    ) from exc
                log.warning("broker: %s on %r, refreshing slot map and retrying", exc.__class__.__name__, key)
                sleep(delay)
                delay = min(delay * 2, 1.0)
                self.refresh()

    def run_script(self, name, keys_, args, wait_kind=None, deadline=None):
        replicas = self.opts.wait_for(wait_kind) if wait_kind else 0

        def run(client, node):
            wait = bool(replicas) and self._skip_wait_until.get((node.name, wait_kind), 0) < monotonic()
            return self._eval(client, node, name, keys_, args, wait, wait_kind)

        return self.on_slot(keys_[0], run, deadline=deadline)

    def _eval(self, client, node, name, keys_, args, wait: bool, kind: str | None):
        if not wait:  # one command: no pipeline to build
            try:
                return client.evalsha(SHAS[name], len(keys_), *keys_, *args)
            except rexc.NoScriptError:  # the script ran nowhere: load it with EVAL
                return client.eval(scripts.ALL[name], len(keys_), *keys_, *args)
        aof = self._runs_waitaof(client, node) and self.opts.replication_wait_aof
        for sha in (True, False):
            pipe = client.pipeline(transaction=False)
            if sha:
                pipe.evalsha(SHAS[name], len(keys_), *keys_, *args)
            else:
                pipe.eval(scripts.ALL[name], len(keys_), *keys_, *args)
            if wait:
                pipe.execute_command("WAIT", self.opts.replication_wait_replicas, self.opts.replication_wait_timeout_ms)
            if aof:
                pipe.execute_command("WAITAOF", 1, 0, self.opts.replication_wait_timeout_ms)
            results = pipe.execute(raise_on_error=False)
            if isinstance(results[0], rexc.NoScriptError) and sha:
                continue  # the script ran nowhere: load it with EVAL
            break
        if isinstance(results[0], Exception):
            raise results[0]
        if wait and isinstance(results[1], Exception):
            raise results[1]
        if aof and isinstance(results[-1], Exception):
            # the node stopped allowing it (appendonly turned off): the write itself went through
            log.warning("broker: WAITAOF on %s failed (%s); using WAIT alone there", node.name, results[-1])
            self._waitaof[node.name] = False
        elif aof and int(results[-1][0]) < 1:
            log.warning(
                "broker: %s did not fsync a write to its AOF within %d ms: a crash of it now could lose it",
                node.name,
                self.opts.replication_wait_timeout_ms,
            )
        if wait and int(results[1]) < self.opts.replication_wait_replicas:
            self._shortfall(client, node, int(results[1]), kind)
        return results[0]

    def _runs_waitaof(self, client, node) -> bool:
        """Whether the node can run WAITAOF; on first contact, say once if a crash and fast restart of it
        (inside cluster-node-timeout, so no failover) could lose publishes it acknowledged."""
        known = self._waitaof.get(node.name)
        if known is None:
            try:
                server = client.info("server")
                persistence = client.info("persistence")
            except rexc.ResponseError:  # INFO restricted (managed services): assume the plain WAIT
                server, persistence = {}, {}
            aof = bool(int(persistence.get("aof_enabled", 0) or 0))
            known = _version(str(server.get("redis_version", "0"))) >= (7, 2) and aof
            try:
                fsync = (client.config_get("appendfsync") or {}).get("appendfsync", "?")
            except rexc.ResponseError:  # CONFIG disabled (managed services)
                fsync = "?"
            if not aof or fsync != "always":
                covered = known and self.opts.replication_wait_aof
                log.warning(
                    "broker: %s (Redis %s) runs appendonly %s, appendfsync %s: a crash and restart of it before a "
                    "failover %s (appendfsync always closes this; see replication_wait_aof)",
                    node.name,
                    server.get("redis_version", "?"),
                    "yes" if aof else "no",
                    fsync,
                    "is covered by WAITAOF" if covered else "can lose the publishes of its last fsync interval",
                )
            self._waitaof[node.name] = known
        return known

    def _shortfall(self, client, node, acked: int, kind: str | None) -> None:
        info = client.info("replication")
        connected = sum(
            1 for k, v in info.items() if k.startswith("slave") and isinstance(v, dict) and v.get("state") == "online"
        )
        verdict = judge(
            self.opts.replication_wait_policy,
            kind or "",
            self.opts.replication_wait_replicas,
            acked,
            connected,
            node.name,
            self.opts.replication_wait_timeout_ms,
        )
        metrics.incr("broker.wait_shortfalls", kind=kind or "write", policy=self.opts.replication_wait_policy)
        if verdict.refuse:
            metrics.incr("broker.wait_refusals", kind=kind or "write")
            raise ReplicationWaitError(verdict.message)
        if verdict.skip_wait_seconds:
            self._skip_wait_until[(node.name, kind or "")] = monotonic() + verdict.skip_wait_seconds
        log.warning("%s", verdict.message)
