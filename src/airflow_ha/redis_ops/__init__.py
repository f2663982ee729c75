"""Operations on the release's Redis Cluster from Kubernetes: replica placement (``redis-reconcile``)."""
