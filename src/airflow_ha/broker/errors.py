"""Exceptions with messages that name the problem (shown by Celery, Airflow and ``airflow-ha broker-check``)."""

from __future__ import annotations

import redis.exceptions


class BrokerConfigError(ValueError):
    """Configuration that can never work (bad option, wrong password, broken cluster): not retried."""


class BrokerAuthError(BrokerConfigError):
    """The cluster refused the credentials in the broker URL."""


class BrokerTLSError(BrokerConfigError):
    """TLS to the cluster cannot work as configured: the CA does not vouch for a node's certificate, the
    certificate names another host, or the CA file is missing."""


class BrokerClusterError(BrokerConfigError):
    """The seeds answered, but the cluster cannot serve every slot (cluster_state not ok)."""


class BrokerUnavailable(redis.exceptions.ConnectionError):
    """No seed node reachable, or a failover did not finish within ``failover_timeout``.

    A connection error for kombu/Celery: they retry connecting per their own retry policy.
    """


class ReplicationWaitError(BrokerUnavailable):
    """``WAIT`` saw fewer replicas than ``replication_wait_replicas`` acknowledge a write (policy ``raise``)."""
