"""Is the Redis Cluster usable as a broker? The check ``airflow-ha broker-check`` (the worker readiness
probe) and every broker connection run first.

Only what can never heal by waiting is fatal (:class:`BrokerAuthError`, :class:`BrokerTLSError`, and a
plain Redis server behind a ``rediscluster://`` URL: :class:`BrokerClusterError`). Everything a starting
or failing-over cluster goes through is a :class:`BrokerUnavailable` that Celery retries, with a message
naming the state: no seed reachable yet, no slot assigned yet (the chart's bootstrap Job has not created
the cluster), slots without an owner, ``cluster_state:fail`` during a failover or on the cut-off side of a
partition.
"""

from __future__ import annotations

import os
import ssl

import redis
import redis.exceptions as rexc

from airflow_ha.broker.errors import BrokerAuthError, BrokerClusterError, BrokerTLSError, BrokerUnavailable
from airflow_ha.broker.options import BrokerOptions
from airflow_ha.broker.url import ClusterURL
from airflow_ha.redis_ops.cluster_nodes import MASTER, TOTAL_SLOTS, TopologyError, parse_cluster_nodes


def _seed_client(url: ClusterURL, host: str, port: int, opts: BrokerOptions) -> redis.Redis:
    return redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=opts.socket_connect_timeout,
        socket_timeout=opts.socket_connect_timeout,
        retry=None,
        decode_responses=True,
        **url.redis_kwargs(),
    )


def _auth_error(host: str, port: int, exc: Exception) -> BrokerAuthError:
    return BrokerAuthError(
        f"Redis Cluster seed {host}:{port} refused the credentials in the broker URL ({exc}): "
        "check the password (and user) in the rediscluster:// URL"
    )


def _tls_error(url: ClusterURL, host: str, port: int, exc: BaseException) -> BrokerTLSError | None:
    """The TLS failure behind a connection error, named; None when it is not one (or TLS is off)."""
    if not url.ssl:
        return None
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    text = str(cause or exc)
    if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        ca = url.ssl_options.get("ssl_ca_certs")
        trusted = f"the CA in ssl_ca_certs={ca}" if ca else "the system CA store (no ssl_ca_certs given)"
        reason = getattr(cause, "verify_message", None) or text
        return BrokerTLSError(
            f"Redis Cluster seed {host}:{port}: its TLS certificate was not accepted ({reason}): it must chain "
            f"to {trusted} and name the host {host!r} (ssl_check_hostname=false skips the name only)"
        )
    return None


def check_cluster(url: ClusterURL, opts: BrokerOptions) -> dict:
    """Ask the seeds in turn until one reports ``cluster_state:ok`` with every slot assigned; return its
    ``CLUSTER INFO`` plus ``masters``/``replicas`` counted from its ``CLUSTER NODES``.

    Bounded by ``socket_connect_timeout`` per seed (no hang). Raises as the module docstring says.
    """
    ca = url.ssl_options.get("ssl_ca_certs")
    if url.ssl and ca and not os.path.isfile(ca):
        raise BrokerTLSError(f"ssl_ca_certs={ca}: no such file (the CA bundle the nodes' certificates chain to)")
    failures, states = [], []
    for host, port in url.seeds:
        client = _seed_client(url, host, port, opts)
        try:
            client.ping()
            info = client.execute_command("CLUSTER INFO")
            nodes_text = client.execute_command("CLUSTER", "NODES")  # two words: the raw text, not a dict
        except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
            raise _auth_error(host, port, exc) from None
        except rexc.ResponseError as exc:
            text = str(exc)
            if "NOAUTH" in text:
                raise BrokerAuthError(
                    f"Redis Cluster seed {host}:{port} requires a password that the broker URL does not give "
                    f"({exc}): use rediscluster://:PASSWORD@host:port,..."
                ) from None
            if "WRONGPASS" in text or "NOPERM" in text:
                raise _auth_error(host, port, exc) from None
            if "cluster support disabled" in text:
                raise BrokerClusterError(
                    f"{host}:{port} is a plain Redis server, not a cluster node (cluster-enabled no): "
                    "use redis:// for it, or point rediscluster:// at cluster nodes"
                ) from None
            failures.append(f"{host}:{port} ({exc})")  # LOADING, ...: a node still starting
            continue
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            tls = _tls_error(url, host, port, exc)
            if tls is not None:
                raise tls from None
            failures.append(f"{host}:{port} ({exc.__class__.__name__}: {exc})")
            continue
        finally:
            client.close()
        if isinstance(info, str):
            info = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        info = dict(info)
        assigned = int(info.get("cluster_slots_assigned", 0))
        if info.get("cluster_state") == "ok" and assigned >= TOTAL_SLOTS:
            try:
                nodes = parse_cluster_nodes(nodes_text if isinstance(nodes_text, str) else "")
            except TopologyError:
                nodes = []
            info["masters"] = sum(1 for n in nodes if n.role == MASTER and n.slots and not n.failing)
            info["replicas"] = sum(1 for n in nodes if n.role != MASTER and not n.failing)
            return info
        if assigned == 0:
            states.append(f"{host}:{port} (no slot assigned yet: the cluster has not been created)")
        else:
            states.append(
                f"{host}:{port} (cluster_state={info.get('cluster_state')}, {assigned} of {TOTAL_SLOTS} slots "
                f"assigned, {info.get('cluster_slots_fail', '?')} failing)"
            )
    if states:
        raise BrokerUnavailable(
            "Redis Cluster not serving every slot yet (being created, failing over or partitioned; retried): "
            + "; ".join(states)
        )
    # A TLS-only node drops a plaintext client unanswered, and a plaintext node waits for the rest of a
    # TLS hello as if it were a command (a connect timeout): from here both look like nodes that are down.
    hint = (
        " (if the nodes do not use TLS, use rediscluster://)"
        if url.ssl
        else " (if the cluster requires TLS, use redisclusters://)"
    )
    raise BrokerUnavailable(
        f"no Redis Cluster seed node reachable within {opts.socket_connect_timeout:g}s each: "
        + "; ".join(failures)
        + hint
    )
