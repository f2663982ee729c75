"""The agent's planner: who bootstraps, who joins, who waits; never two bootstraps."""

from __future__ import annotations

import itertools

import pytest

from airflow_ha.mysql_ops.gtid import GtidSet
from airflow_ha.mysql_ops.planner import (
    Action,
    MemberReport,
    ViewMember,
    bootstrap_candidate,
    health,
    plan,
    primary_check,
    ready,
)

U = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
GROUP = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def g(text: str) -> GtidSet:
    return GtidSet.parse(text)


def view(*states: str, primary: int = 0) -> tuple[ViewMember, ...]:
    return tuple(
        ViewMember(f"uuid-{i}", f"h{i}", 3306, s, "PRIMARY" if i == primary and s == "ONLINE" else "SECONDARY")
        for i, s in enumerate(states)
    )


def offline(i: int, gtids: str = "") -> MemberReport:
    return MemberReport(i, True, uuid=f"uuid-{i}", state="OFFLINE", gtids=g(gtids), super_read_only=True)


def down(i: int) -> MemberReport:
    return MemberReport(i, False, error="Can't connect")


def online(i: int, role: str = "PRIMARY", gtids: str = "", v=None, sro: bool | None = None) -> MemberReport:
    v = v if v is not None else view("ONLINE", "ONLINE", "ONLINE", primary=i if role == "PRIMARY" else 9)
    return MemberReport(
        i,
        True,
        uuid=f"uuid-{i}",
        state="ONLINE",
        role=role,
        view=v,
        gtids=g(gtids),
        super_read_only=(role != "PRIMARY") if sro is None else sro,
    )


def state(i: int, s: str, gtids: str = "") -> MemberReport:
    return MemberReport(i, True, uuid=f"uuid-{i}", state=s, view=view(s), gtids=g(gtids), super_read_only=True)


# -- first install ------------------------------------------------------------------------------------
def test_first_install_ordinal_0_bootstraps_the_others_wait():
    reports = [offline(0), offline(1), offline(2)]
    assert plan(0, reports).action == Action.BOOTSTRAP
    for me in (1, 2):
        d = plan(me, reports)
        assert d.action == Action.WAIT and "0, bootstraps" in d.reason


def test_first_install_waits_for_every_member_to_answer():
    # Member 0 empty while 1 and 2 are silent: it may be a wiped member 0 next to a group that holds the data.
    for reports in ([offline(0), down(1), offline(2)], [offline(0), offline(1), down(2)]):
        d = plan(0, reports)
        assert d.action == Action.WAIT and "unreachable" in d.reason


def test_then_the_others_join():
    reports = [online(0, v=view("ONLINE")), offline(1), offline(2)]
    for me in (1, 2):
        d = plan(me, reports)
        assert d.action == Action.JOIN and not d.clone


# -- an existing group --------------------------------------------------------------------------------
def test_online_member_does_nothing():
    reports = [online(0), online(1, "SECONDARY"), online(2, "SECONDARY")]
    assert all(plan(i, reports).action == Action.NONE for i in range(3))


def test_recovering_member_does_nothing():
    assert plan(1, [online(0), state(1, "RECOVERING"), online(2, "SECONDARY")]).action == Action.NONE


def test_restarted_member_joins_the_group_elected_without_it():
    v = view("UNREACHABLE", "ONLINE", "ONLINE", primary=1)
    reports = [offline(0, f"{U}:1-10"), online(1, gtids=f"{U}:1-20", v=v), online(2, "SECONDARY", f"{U}:1-20", v=v)]
    d = plan(0, reports, clone_threshold=100)
    assert d.action == Action.JOIN and d.missing == 10 and not d.clone


def test_wiped_member_joins_by_clone_above_the_threshold():
    reports = [offline(0), online(1, gtids=f"{U}:1-500"), online(2, "SECONDARY", f"{U}:1-500")]
    d = plan(0, reports, clone_threshold=100)
    assert d.action == Action.JOIN and d.clone and "CLONE" in d.reason
    assert not plan(0, reports, clone_threshold=None).clone


def test_member_with_errant_transactions_does_not_join():
    other = "4e11fa47-71ca-11e1-9e33-c80aa9429562"
    reports = [offline(0, f"{U}:1-10,{other}:1"), online(1, gtids=f"{U}:1-20"), online(2, "SECONDARY", f"{U}:1-20")]
    d = plan(0, reports)
    assert d.action == Action.WAIT and "errant" in d.reason


def test_error_member_stops_first():
    reports = [state(0, "ERROR", f"{U}:1-5"), online(1), online(2, "SECONDARY")]
    assert plan(0, reports).action == Action.STOP


def test_minority_online_member_waits():
    v = view("ONLINE", "UNREACHABLE", "UNREACHABLE")
    reports = [online(0, v=v, sro=False), down(1), down(2)]
    d = plan(0, reports)
    assert d.action == Action.WAIT and "majority" in d.reason


def test_no_join_into_a_minority_group():
    v = view("ONLINE", "UNREACHABLE", "UNREACHABLE")
    reports = [online(0, v=v), offline(1, f"{U}:1-5"), offline(2, f"{U}:1-5")]
    for me in (1, 2):
        d = plan(me, reports)
        assert d.action == Action.WAIT and "not a full outage" in d.reason


def test_recovering_somewhere_is_not_a_full_outage():
    reports = [offline(0, f"{U}:1-9"), state(1, "RECOVERING", f"{U}:1-5"), offline(2, f"{U}:1-9")]
    assert plan(0, reports).action == Action.WAIT


def test_unreachable_self_waits():
    assert plan(0, [down(0), online(1), online(2, "SECONDARY")]).action == Action.WAIT


def test_unknown_member_index_is_an_error():
    with pytest.raises(ValueError):
        plan(5, [offline(0)])


# -- reboot from a complete outage ------------------------------------------------------------------
def test_outage_the_most_advanced_member_bootstraps():
    reports = [offline(0, f"{U}:1-90"), offline(1, f"{U}:1-100"), offline(2, f"{U}:1-95")]
    assert [plan(i, reports).action for i in range(3)] == [Action.WAIT, Action.BOOTSTRAP, Action.WAIT]
    assert "member 1" in plan(0, reports).reason


def test_outage_tie_goes_to_the_lowest_ordinal():
    reports = [offline(0, f"{U}:1-90"), offline(1, f"{U}:1-100"), offline(2, f"{U}:1-100")]
    assert [plan(i, reports).action for i in range(3)] == [Action.WAIT, Action.BOOTSTRAP, Action.WAIT]


def test_outage_needs_every_member():
    # member 2 silent: it might hold the newest transactions
    reports = [offline(0, f"{U}:1-90"), offline(1, f"{U}:1-100"), down(2)]
    assert all(plan(i, reports).action == Action.WAIT for i in (0, 1))


def test_outage_with_error_members_still_reboots():
    reports = [state(0, "ERROR", f"{U}:1-100"), offline(1, f"{U}:1-90"), offline(2, f"{U}:1-90")]
    assert plan(0, reports).action == Action.STOP  # leave ERROR first
    assert plan(1, reports).action == Action.WAIT
    after = [offline(0, f"{U}:1-100"), offline(1, f"{U}:1-90"), offline(2, f"{U}:1-90")]
    assert plan(0, after).action == Action.BOOTSTRAP


def test_outage_with_diverged_sets_needs_an_operator():
    other = "4e11fa47-71ca-11e1-9e33-c80aa9429562"
    reports = [offline(0, f"{U}:1-100"), offline(1, f"{U}:1-99,{other}:1"), offline(2, f"{U}:1-50")]
    cand, why = bootstrap_candidate(reports)
    assert cand is None and "diverged" in why
    assert all(plan(i, reports).action == Action.WAIT for i in range(3))


def test_received_but_unapplied_transactions_count():
    # member 0 applied 1-90 but received 91-100 (its report's gtids is the union): it is the most advanced
    reports = [
        MemberReport(0, True, state="OFFLINE", gtids=g(f"{U}:1-90") | g(f"{U}:91-100")),
        offline(1, f"{U}:1-95"),
        offline(2, f"{U}:1-95"),
    ]
    assert plan(0, reports).action == Action.BOOTSTRAP


# -- never two bootstraps --------------------------------------------------------------------------------
KINDS = ["down", "OFFLINE", "ERROR", "RECOVERING", "ONLINE", "ONLINE-minority"]
GTIDS = ["", f"{U}:1-10", f"{U}:1-20", f"{U}:1-10,4e11fa47-71ca-11e1-9e33-c80aa9429562:1"]


def make(i: int, kind: str, gtids: str) -> MemberReport:
    if kind == "down":
        return down(i)
    if kind == "ONLINE":
        return online(i, "PRIMARY" if i == 0 else "SECONDARY", gtids)
    if kind == "ONLINE-minority":
        return online(i, gtids=gtids, v=view("ONLINE", "UNREACHABLE", "UNREACHABLE"))
    if kind == "OFFLINE":
        return offline(i, gtids)
    return state(i, kind, gtids)


@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, repeat=3)))
def test_at_most_one_bootstrap_and_only_in_a_full_outage_of_answering_members(kinds):
    for gtids in itertools.product(GTIDS, repeat=3):
        reports = [make(i, k, gt) for i, (k, gt) in enumerate(zip(kinds, gtids, strict=True))]
        decisions = [plan(i, reports, clone_threshold=5) for i in range(3)]
        boots = [i for i, d in enumerate(decisions) if d.action == Action.BOOTSTRAP]
        assert len(boots) <= 1, (kinds, gtids, decisions)
        if boots:
            # nobody in a group (ERROR members left theirs) and everybody answered
            assert all(k in ("OFFLINE", "ERROR") for k in kinds), (kinds, gtids)
            (b,) = boots
            assert kinds[b] == "OFFLINE"
            assert all(r.gtids <= reports[b].gtids for r in reports)
        for i, d in enumerate(decisions):
            if d.action == Action.JOIN:
                assert kinds[i] == "OFFLINE" and "ONLINE" in kinds
            if kinds[i] in ("ONLINE", "RECOVERING"):
                assert d.action == Action.NONE
            if kinds[i] == "down":
                assert d.action == Action.WAIT


# -- health and readiness ------------------------------------------------------------------------------
def test_health_only_for_a_writable_quorate_primary():
    assert health(online(0))[0]
    assert not health(online(1, "SECONDARY"))[0]
    assert not health(online(0, sro=True))[0]
    assert not health(online(0, v=view("ONLINE", "UNREACHABLE", "UNREACHABLE"), sro=False))[0]
    assert not health(offline(0))[0]
    assert not health(down(0))[0]
    assert not health(state(0, "RECOVERING"))[0]


def test_ready_for_online_members_of_either_role():
    assert ready(online(0))[0]
    assert ready(online(1, "SECONDARY"))[0]
    assert not ready(state(1, "RECOVERING"))[0]
    assert not ready(online(0, v=view("ONLINE", "UNREACHABLE", "UNREACHABLE")))[0]
    assert not ready(down(0))[0]


# -- the proxy's check, cross-checked with the majority --------------------------------------------------
def test_primary_check_agrees_with_the_majority():
    me = online(0)
    peers = [online(1, "SECONDARY"), online(2, "SECONDARY")]
    assert primary_check(me, peers) == (True, "ONLINE PRIMARY, writable")


def test_thawed_old_primary_is_refused_while_it_still_sees_its_old_view():
    # member 0 was frozen: it still sees itself PRIMARY of all three; 1 and 2 expelled it and elected 1
    me = online(0)
    new_view = (ViewMember("uuid-1", "h1", 3306, "ONLINE", "PRIMARY"), ViewMember("uuid-2", "h2", 3306, "ONLINE"))
    peers = [online(1, "PRIMARY", v=new_view), online(2, "SECONDARY", v=new_view)]
    ok, why = primary_check(me, peers)
    assert not ok and "does not include this member" in why
    # a group that still lists it but follows another primary
    other = view("ONLINE", "ONLINE", "ONLINE", primary=1)
    ok, why = primary_check(me, [online(1, "PRIMARY", v=other), online(2, "SECONDARY", v=other)])
    assert not ok and "another PRIMARY" in why


def test_thawed_old_primary_is_refused_while_the_majority_cannot_reach_it():
    # the window before the expulsion: 1 and 2 still list member 0, as UNREACHABLE, and have no primary
    me = online(0)
    suspect = view("UNREACHABLE", "ONLINE", "ONLINE", primary=0)
    ok, why = primary_check(me, [online(1, "SECONDARY", v=suspect), online(2, "SECONDARY", v=suspect)])
    assert not ok and "cannot reach this member" in why


def test_primary_check_ignores_silent_and_minority_peers():
    me = online(0)
    minority = online(1, "PRIMARY", v=view("UNREACHABLE", "ONLINE", "UNREACHABLE", primary=1))
    assert primary_check(me, [down(1), down(2)])[0]
    assert primary_check(me, [minority, offline(2)])[0]
    assert primary_check(me, [state(1, "RECOVERING"), online(2, "SECONDARY")])[0]


def test_primary_check_is_never_200_without_local_health():
    assert not primary_check(online(1, "SECONDARY"), [online(0)])[0]
    assert not primary_check(down(0), [])[0]


def test_join_waits_until_the_previous_incarnation_is_expelled():
    # member 0 restarted (or re-provisioned) faster than the group expelled it: its old entry is still there
    old_entry = (
        ViewMember("uuid-old", "h0", 3306, "UNREACHABLE"),
        ViewMember("uuid-1", "h1", 3306, "ONLINE", "PRIMARY"),
        ViewMember("uuid-2", "h2", 3306, "ONLINE", "SECONDARY"),
    )
    me = MemberReport(0, True, uuid="uuid-new", state="OFFLINE", address="h0:3306")
    reports = [me, online(1, v=old_entry), online(2, "SECONDARY", v=old_entry)]
    d = plan(0, reports)
    assert d.action == Action.WAIT and "previous incarnation" in d.reason
    # same uuid (a restart), still listed as UNREACHABLE: wait too
    same = (ViewMember("uuid-0", "h0", 3306, "UNREACHABLE"), *old_entry[1:])
    me_again = MemberReport(0, True, uuid="uuid-0", state="OFFLINE", address="h0:3306")
    assert plan(0, [me_again, online(1, v=same), online(2, "SECONDARY", v=same)]).action == Action.WAIT
    # expelled: join
    expelled = old_entry[1:]
    assert plan(0, [me, online(1, v=expelled), online(2, "SECONDARY", v=expelled)]).action == Action.JOIN


def test_a_server_back_from_a_silence_is_held_before_it_may_be_primary_again():
    """A thawed old primary still reports its old view for a moment; its peers' contradicting reports can be
    missing then (probes timing out on a loaded node: one 200 right after the thaw, seen in CI)."""
    from airflow_ha.mysql_ops.agent import SilenceGuard

    guard = SilenceGuard(hold=3.0, min_silence=2.0)
    assert guard.observe(True, 0.0) is None  # never silent: an agent (re)started beside a primary is not held
    for t in (1.0, 2.0, 3.5):  # frozen: no answer for 2.5 s
        assert guard.observe(False, t) is None
    reason = guard.observe(True, 4.0)
    assert reason and "holding 3s" in reason
    assert guard.observe(True, 6.9) is not None
    assert guard.observe(True, 7.0) is None  # held for 3 s, then the usual checks decide
    # one slow probe on a loaded node is not a silence
    assert guard.observe(False, 10.0) is None and guard.observe(False, 11.0) is None
    assert guard.observe(True, 11.5) is None
