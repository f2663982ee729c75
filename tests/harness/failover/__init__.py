"""The failover suite: each scenario written once, run against a local or a Kubernetes backend."""
