"""What a write does when fewer replicas acknowledged it than asked: a pure function, no I/O.

Redis replicates asynchronously, so after each publish (and ack) the transport runs ``WAIT`` for
``replication_wait_replicas`` replicas (see :mod:`airflow_ha.broker.routing`). When ``WAIT`` comes back
short, :func:`judge` decides from the policy, the kind of write and how many replicas the master still
counts as connected:

* ``raise`` (consistency first): a short publish is refused (:class:`ReplicationWaitError`; Celery
  publishes it again, so it may be duplicated, never silently lost). A master without replicas refuses
  every publish.
* ``auto`` (the default): replicas that are connected but silent are what the cut-off side of a network
  partition sees (the majority is promoting one of them; what this master takes now is dropped when it
  rejoins as a replica), so the publish is refused as with ``raise``; a master with no connected replica
  (its replica died, or it is the freshly promoted one) cannot be helped by waiting, so it carries on.
* ``warn`` (availability first): log and carry on.

Consumer bookkeeping (ack, requeue, visibility restore) only ever warns: an ack lost in a failover leaves
the message unacked, so it runs again; it is never lost. When the master has fewer connected replicas
than asked, no ``WAIT`` can succeed, so that kind of write skips ``WAIT`` on that node for a while
instead of paying the timeout on every write — never a publish under ``raise``, which keeps refusing.
"""

from __future__ import annotations

from dataclasses import dataclass

SKIP_SECONDS = 5.0


@dataclass(frozen=True)
class Verdict:
    refuse: bool  # raise ReplicationWaitError to the publisher
    skip_wait_seconds: float  # skip WAIT for this kind of write on this node for so long (0: keep waiting)
    message: str


def judge(policy: str, kind: str, wanted: int, acked: int, connected: int, node: str, timeout_ms: int) -> Verdict:
    """``wanted`` replicas asked, ``acked`` acknowledged within ``timeout_ms``, ``connected`` online."""
    head = f"broker: only {acked} of {wanted} replica(s) of {node} acknowledged a write within {timeout_ms} ms"
    if kind == "publish" and (policy == "raise" or (policy == "auto" and connected >= wanted)):
        why = "" if policy == "raise" else "; its replicas are connected but silent, as across a partition"
        return Verdict(
            refuse=True,
            skip_wait_seconds=0.0,
            message=f"{head} ({connected} in sync): the write is on the master only and could be lost in a "
            f"failover (replication_wait_policy={policy}{why})",
        )
    if connected < wanted:
        return Verdict(
            refuse=False,
            skip_wait_seconds=SKIP_SECONDS,
            message=f"broker: master {node} has {connected} in-sync replica(s) < replication_wait_replicas={wanted}: "
            f"{kind} writes there are not protected against loss on failover; skipping WAIT for them for "
            f"{SKIP_SECONDS:g}s",
        )
    return Verdict(refuse=False, skip_wait_seconds=0.0, message=f"{head}: it can be lost if {node} fails now")
