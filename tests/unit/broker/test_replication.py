"""The replication policy :func:`airflow_ha.broker.replication.judge`, exhaustively (pure: no server)."""

from __future__ import annotations

import itertools

import pytest

from airflow_ha.broker.options import WAIT_ON, WAIT_POLICIES
from airflow_ha.broker.replication import SKIP_SECONDS, judge

KINDS = (*WAIT_ON, "")  # "" : a write run with no kind (never asked to wait, judged like bookkeeping)
WANTED = (1, 2)


def _expected(policy: str, kind: str, wanted: int, connected: int) -> tuple[bool, float]:
    """(refuse, skip_wait_seconds) as the module docstring states it."""
    if kind == "publish":
        if policy == "raise":
            return True, 0.0  # never switched off: every short publish is refused
        if policy == "auto":
            return (True, 0.0) if connected >= wanted else (False, SKIP_SECONDS)
    return False, (SKIP_SECONDS if connected < wanted else 0.0)  # bookkeeping only warns


CASES = [
    (policy, kind, wanted, connected, acked)
    for policy, kind, wanted in itertools.product(WAIT_POLICIES, KINDS, WANTED)
    for connected in range(wanted + 2)  # below, at and above wanted
    for acked in range(wanted)  # a shortfall: fewer acknowledged than wanted
]


@pytest.mark.parametrize(("policy", "kind", "wanted", "connected", "acked"), CASES)
def test_judge_every_policy_kind_and_replica_count(policy, kind, wanted, connected, acked):
    verdict = judge(policy, kind, wanted, acked, connected, "10.0.0.1:7000", 500)
    assert (verdict.refuse, verdict.skip_wait_seconds) == _expected(policy, kind, wanted, connected)
    assert "10.0.0.1:7000" in verdict.message
    if verdict.refuse:
        assert f"replication_wait_policy={policy}" in verdict.message
    if verdict.skip_wait_seconds:
        assert f"{kind} writes" in verdict.message and "skipping WAIT" in verdict.message


def test_under_raise_no_verdict_ever_switches_wait_off_for_publishes():
    """The skip is keyed by (node, kind) in the router; for kind=publish under raise it is never set, whatever
    an ack on the same node saw before."""
    for wanted in WANTED:
        for connected in range(wanted + 2):
            for acked in range(wanted):
                publish = judge("raise", "publish", wanted, acked, connected, "n", 500)
                assert publish.refuse and publish.skip_wait_seconds == 0
                ack = judge("raise", "ack", wanted, acked, connected, "n", 500)
                assert not ack.refuse  # an ack only warns (the message runs again at worst)


def test_case_table_covers_every_combination():
    assert {(c[0], c[1]) for c in CASES} == set(itertools.product(WAIT_POLICIES, KINDS))
    assert {c[1] for c in CASES} >= {"publish", "ack"}
    assert any(c[3] < c[2] for c in CASES) and any(c[3] >= c[2] for c in CASES)
