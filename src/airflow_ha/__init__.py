"""airflow-ha: Apache Airflow 3.3 highly available on Kubernetes.

Subpackages:
- ``broker``: the kombu transport for a Redis Cluster (``rediscluster://``).
- ``sensors``: smart sensors that defer to sharded triggerers.
- ``local``: real servers (Redis Cluster, MySQL) as local processes, for tests and the local backend.
"""

__version__ = "0.1.0"
