"""What one member's agent does next, decided from what every member of the group reports. Pure: no I/O.

Each agent (:mod:`airflow_ha.mysql_ops.agent`) reads, from every member of the configured seed list, whether
its server answers, its own ``MEMBER_STATE``/``MEMBER_ROLE`` and the group view it sees
(``performance_schema.replication_group_members``) and its transactions (``gtid_executed`` plus what its
applier channel received but has not applied yet), then calls :func:`plan` for its own member only. An agent
only ever acts on its own server, so the rules below make every agent reach the same answer about who
bootstraps:

* my member ONLINE or RECOVERING: nothing to do (a member ONLINE in a minority view waits: Group Replication
  itself moves it to ERROR after ``group_replication_unreachable_majority_timeout``);
* my member in ERROR: STOP GROUP_REPLICATION first (the next round rejoins);
* another member ONLINE in a view with a majority: JOIN it (distributed recovery: incremental, or CLONE when
  more than the clone threshold of transactions are missing, e.g. a wiped member), unless my member holds
  transactions the group does not have (errant: joining would be refused; an operator must re-clone it);
* some member ONLINE without quorum, or RECOVERING: not a full outage: wait;
* no member in any group (first install, or every member went down): a *reboot from complete outage*, only
  once EVERY member of the seed list answered with its transactions (a silent member could hold more; two
  bootstraps would be a split brain). The member whose transactions are a superset of every other's
  bootstraps (ties: the lowest ordinal; every set empty: ordinal 0); no superset (diverged sets) needs an
  operator; everybody else waits and joins once it is ONLINE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from airflow_ha.mysql_ops.gtid import GtidSet

ONLINE, RECOVERING, OFFLINE, ERROR, UNREACHABLE = "ONLINE", "RECOVERING", "OFFLINE", "ERROR", "UNREACHABLE"
PRIMARY, SECONDARY = "PRIMARY", "SECONDARY"


@dataclass(frozen=True)
class ViewMember:
    """One row of ``performance_schema.replication_group_members`` as a member sees it."""

    uuid: str
    host: str
    port: int
    state: str
    role: str = ""


@dataclass(frozen=True)
class MemberReport:
    """What one member of the seed list answered (or that it did not)."""

    index: int
    reachable: bool
    uuid: str = ""
    state: str = OFFLINE  # the member's own MEMBER_STATE; OFFLINE when Group Replication is not running
    role: str = ""
    view: tuple[ViewMember, ...] = ()
    gtids: GtidSet = field(default_factory=GtidSet)  # gtid_executed + received by the applier channel
    super_read_only: bool | None = None
    error: str = ""
    address: str = ""  # host:port this member reports to the group (report_host/report_port)

    @property
    def quorate(self) -> bool:
        """Its view has a majority of members it can reach (not UNREACHABLE)."""
        if not self.view:
            return False
        reachable = sum(1 for m in self.view if m.state != UNREACHABLE)
        return reachable * 2 > len(self.view)

    @property
    def in_group(self) -> bool:
        return self.reachable and self.state in (ONLINE, RECOVERING)

    def describe(self) -> str:
        if not self.reachable:
            return f"member {self.index}: unreachable ({self.error or 'no answer'})"
        role = f" {self.role}" if self.role else ""
        return f"member {self.index}: {self.state}{role}, {len(self.gtids)} transactions"


class Action(StrEnum):
    NONE = "none"  # in a group: nothing to do
    WAIT = "wait"  # nothing safe to do now; look again
    STOP = "stop"  # STOP GROUP_REPLICATION (leave an ERROR state)
    JOIN = "join"  # START GROUP_REPLICATION into the ONLINE group
    BOOTSTRAP = "bootstrap"  # group_replication_bootstrap_group=ON; START GROUP_REPLICATION


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    clone: bool = False  # JOIN: recovery is expected to use CLONE (missing transactions above the threshold)
    missing: int = 0  # JOIN: transactions the group has that this member lacks


def bootstrap_candidate(reports: Sequence[MemberReport]) -> tuple[MemberReport | None, str]:
    """The member that reboots the group from a complete outage, from EVERY member's report; (None, why) if
    none may. Callers make sure every member answered and none is in a group."""
    if not reports:
        return None, "no members configured"
    if not any(r.gtids for r in reports):
        first = min(reports, key=lambda r: r.index)
        return first, f"every member is empty (first install): the lowest ordinal, {first.index}, bootstraps"
    supersets = [r for r in reports if all(o.gtids <= r.gtids for o in reports)]
    if not supersets:
        sets = "; ".join(f"{r.index}: {r.gtids}" for r in reports)
        return None, (
            "the members' transactions diverged (no member has every other's): an operator must choose the "
            f"member to keep and re-clone the others ({sets})"
        )
    best = min(supersets, key=lambda r: r.index)
    return best, f"member {best.index} has every transaction of every member ({len(best.gtids)})"


def plan(me: int, reports: Sequence[MemberReport], clone_threshold: int | None = None) -> Decision:
    """The next step of member ``me``'s agent. ``reports`` holds one report per seed-list member (``me`` too)."""
    by_index = {r.index: r for r in reports}
    if me not in by_index:
        raise ValueError(f"member {me} is not in the seed list {sorted(by_index)}")
    mine = by_index[me]
    others = [r for r in reports if r.index != me]

    if not mine.reachable:
        return Decision(Action.WAIT, f"my server does not answer ({mine.error or 'no answer'})")
    if mine.state == RECOVERING:
        return Decision(Action.NONE, "RECOVERING: distributed recovery is running")
    if mine.state == ONLINE:
        if not mine.quorate:
            return Decision(
                Action.WAIT,
                "ONLINE in a view without a majority (a partition or lost members): Group Replication blocks "
                "writes and leaves after group_replication_unreachable_majority_timeout",
            )
        return Decision(Action.NONE, f"ONLINE {mine.role or ''}".strip())
    if mine.state == ERROR:
        return Decision(Action.STOP, "member in ERROR: stop Group Replication, then rejoin")
    if mine.state not in (OFFLINE, UNREACHABLE):
        return Decision(Action.WAIT, f"unexpected member state {mine.state!r}")

    groups = [r for r in others if r.reachable and r.state == ONLINE and r.quorate]
    if groups:
        group_gtids = GtidSet()
        for r in groups:
            group_gtids = group_gtids | r.gtids
        if not mine.gtids <= group_gtids:
            return Decision(
                Action.WAIT,
                "my member has transactions the ONLINE group lacks (errant transactions): it cannot join; an "
                "operator must re-provision it (empty its data directory: it then rejoins by CLONE)",
            )
        if mine.address:
            stale = [
                (r.index, m.state)
                for r in groups
                for m in r.view
                if f"{m.host}:{m.port}" == mine.address and (m.uuid != mine.uuid or m.state == UNREACHABLE)
            ]
            if stale:
                return Decision(
                    Action.WAIT,
                    f"the group still lists this member's previous incarnation ({stale[0][1]} in member "
                    f"{stale[0][0]}'s view): joining now would time out; it is expelled within seconds",
                )
        missing = len(group_gtids) - len(mine.gtids)
        clone = clone_threshold is not None and missing > clone_threshold
        donors = ", ".join(str(r.index) for r in groups)
        how = "CLONE" if clone else "incremental recovery"
        return Decision(
            Action.JOIN,
            f"join the ONLINE group (members {donors}); {missing} transactions missing: {how}",
            clone=clone,
            missing=missing,
        )

    active = [r for r in others if r.in_group]
    if active:
        return Decision(
            Action.WAIT,
            "no group with a majority to join, but not a full outage: " + "; ".join(r.describe() for r in active),
        )
    silent = [r for r in others if not r.reachable]
    if silent:
        return Decision(
            Action.WAIT,
            "no member is in a group; a reboot needs every member's transactions first: "
            + "; ".join(r.describe() for r in silent),
        )
    candidate, why = bootstrap_candidate(reports)
    if candidate is None:
        return Decision(Action.WAIT, why)
    if candidate.index == me:
        return Decision(Action.BOOTSTRAP, f"no member is in a group; {why}")
    return Decision(Action.WAIT, f"no member is in a group; {why}: waiting for it")


def health(report: MemberReport) -> tuple[bool, str]:
    """The proxy's check: True only for a writable PRIMARY in a view with a majority."""
    if not report.reachable:
        return False, f"server does not answer ({report.error or 'no answer'})"
    if report.state != ONLINE:
        return False, f"member {report.state}"
    if report.role != PRIMARY:
        return False, f"ONLINE {report.role or 'without role'}"
    if not report.quorate:
        return False, "PRIMARY in a view without a majority"
    if report.super_read_only is not False:
        return False, "PRIMARY but super_read_only is ON"
    return True, "ONLINE PRIMARY, writable"


def primary_check(mine: MemberReport, peers: Sequence[MemberReport]) -> tuple[bool, str]:
    """:func:`health`, cross-checked with the other members: a member that was frozen or cut off and comes
    back still sees its old view (itself ONLINE PRIMARY of a majority) until it learns it was expelled. So it
    is the primary only if no other member ONLINE in a view with a majority sees a group without it or another
    PRIMARY. Members that do not answer (a partition) do not count: the local majority check covers that."""
    ok, why = health(mine)
    if not ok:
        return ok, why
    for peer in peers:
        if peer.index == mine.index or not (peer.reachable and peer.state == ONLINE and peer.quorate):
            continue
        seen = [m for m in peer.view if m.uuid == mine.uuid]
        if mine.uuid and not seen:
            return False, f"member {peer.index}'s group (a majority) does not include this member"
        if seen and seen[0].state == UNREACHABLE:
            # the majority cannot reach it: it is about to be expelled, and its commits cannot certify
            return False, f"member {peer.index}'s group (a majority) cannot reach this member"
        others = [m for m in peer.view if m.role == PRIMARY and m.state == ONLINE and m.uuid != mine.uuid]
        if others:
            return (
                False,
                f"member {peer.index}'s group (a majority) has another PRIMARY ({others[0].host}:{others[0].port})",
            )
    return True, why


def ready(report: MemberReport) -> tuple[bool, str]:
    """The member's pod readiness: ONLINE (either role) in a view with a majority."""
    if not report.reachable:
        return False, f"server does not answer ({report.error or 'no answer'})"
    if report.state != ONLINE:
        return False, f"member {report.state}"
    if not report.quorate:
        return False, "ONLINE in a view without a majority"
    return True, f"ONLINE {report.role}".strip()
