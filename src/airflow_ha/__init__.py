"""airflow-ha: Apache Airflow 3.3 highly available on Kubernetes.

Subpackages:
- ``broker``: the kombu transport for a Redis Cluster (``rediscluster://``).
- ``sensors``: smart sensors that defer to sharded triggerers.

The version is the repository's ``VERSION`` file, as installed.
"""

from importlib import metadata

__version__ = metadata.version("airflow-ha")
