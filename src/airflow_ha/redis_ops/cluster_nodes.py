"""The one model of ``CLUSTER NODES``: used by the broker's health check, the replica reconciler and the
failover suite alike, so that slot ranges, roles and hostnames are read one way everywhere.

Redis 7 line format::

    <id> <ip:port@cport[,hostname]> <flags> <master id | -> <ping-sent> <pong-recv> <config-epoch>
    <link-state> <slot> <slot-range> ... [<slot>->-<importing id>] [<slot>-<-<migrating id>]
"""

from __future__ import annotations

from dataclasses import dataclass

TOTAL_SLOTS = 16384
MASTER = "master"
REPLICA = "replica"


class TopologyError(ValueError):
    """CLUSTER NODES output or the topology cannot be used (the message says why)."""


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    ip: str
    port: int
    hostname: str
    flags: frozenset[str]
    master_id: str | None
    link_state: str
    slot_ranges: tuple[tuple[int, int], ...] = ()

    @property
    def is_myself(self) -> bool:
        return "myself" in self.flags

    @property
    def role(self) -> str:
        return MASTER if "master" in self.flags else REPLICA

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"}) or self.link_state != "connected"

    @property
    def slots(self) -> int:
        """How many slots this node serves (migrating/importing markers not counted)."""
        return sum(hi - lo + 1 for lo, hi in self.slot_ranges)

    @property
    def address(self) -> str:
        """``hostname:port`` where the node announces a hostname, else ``ip:port``."""
        return f"{self.hostname or self.ip}:{self.port}"

    def owns(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slot_ranges)


def _slot_ranges(fields: list[str]) -> tuple[tuple[int, int], ...]:
    ranges = []
    for item in fields:
        if item.startswith("["):  # a slot being imported/migrated: [slot->-id] / [slot-<-id]
            continue
        lo, _, hi = item.partition("-")
        ranges.append((int(lo), int(hi or lo)))
    return tuple(ranges)


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """Parse ``CLUSTER NODES`` text; :class:`TopologyError` names a line that is not of that form."""
    nodes = []
    for lineno, line in enumerate(text.strip().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 8:
            raise TopologyError(f"CLUSTER NODES line {lineno} has {len(parts)} fields, expected >= 8: {line!r}")
        node_id, address, flags, master, _ping, _pong, _epoch, link = parts[:8]
        endpoint, _, hostname = address.partition(",")
        hostport = endpoint.split("@", 1)[0]
        ip, _, port = hostport.rpartition(":")
        if not port.isdigit():
            raise TopologyError(f"CLUSTER NODES line {lineno}: bad address {address!r}")
        try:
            ranges = _slot_ranges(parts[8:])
        except ValueError:
            raise TopologyError(f"CLUSTER NODES line {lineno}: bad slot range in {line!r}") from None
        nodes.append(
            ClusterNode(
                node_id=node_id,
                ip=ip,
                port=int(port),
                hostname=hostname,
                flags=frozenset(flags.split(",")),
                master_id=None if master == "-" else master,
                link_state=link,
                slot_ranges=ranges,
            )
        )
    return nodes


def slot_owner(nodes: list[ClusterNode], slot: int) -> ClusterNode | None:
    """The healthy master serving ``slot`` in this view, if any."""
    return next((n for n in nodes if n.role == MASTER and not n.failing and n.owns(slot)), None)


def uncovered_slots(nodes: list[ClusterNode]) -> int:
    """How many slots no master in this view serves."""
    covered = set()
    for n in nodes:
        if n.role == MASTER:
            for lo, hi in n.slot_ranges:
                covered.update(range(lo, hi + 1))
    return TOTAL_SLOTS - len(covered)
