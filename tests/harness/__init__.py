"""The test harness, used by ``tests/`` and ``benchmarks/`` and never shipped in the package or the image.

``servers``: launchers for the real servers the integration tests and benchmarks run on 127.0.0.1 (Redis
Cluster, MySQL and its Group Replication members, Airflow processes) from a cached Debian root.
``failover``: the failover scenarios, written once against a backend (the local processes or a release
on Kubernetes), node control for ``../shared/kube`` and kind, and the REST and port-forward clients.
"""
