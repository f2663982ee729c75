"""The compat registry: each fix names its upstream bug, covers the pinned stack, and is applied only
inside the versions it was written for (the fixes themselves run in tests/integration/test_compat.py)."""

from __future__ import annotations

import logging
import re
from importlib import metadata

import pytest

from airflow_ha import compat

UPSTREAM = re.compile(r"\b[\w.-]+/[\w.-]+#\d+")


@pytest.fixture
def fresh(monkeypatch):
    """install() as in a new process: nothing applied yet, no skip list."""
    monkeypatch.setattr(compat, "_applied", None)
    monkeypatch.delenv(compat.SKIP_ENV, raising=False)
    return monkeypatch


def recording(name: str, affected: dict, calls: list) -> compat.Fix:
    return compat.Fix(name, affected, "example/project#1", lambda: calls.append(name))


@pytest.mark.parametrize("fix", compat.FIXES, ids=lambda f: f.name)
def test_each_fix_names_its_upstream_bug_and_covers_the_pinned_stack(fix):
    assert UPSTREAM.search(fix.upstream), f"{fix.name}: name the upstream issue or PR as owner/repo#N"
    assert fix.out_of_range() == [], f"{fix.name} would not be applied to the pinned stack: re-run its canary"


def test_names_are_unique():
    names = [fix.name for fix in compat.FIXES]
    assert len(names) == len(set(names))


def test_a_fix_is_applied_inside_its_range_and_left_out_with_a_warning_outside(fresh, caplog):
    celery = metadata.version("celery")
    calls: list[str] = []
    fresh.setattr(
        compat,
        "FIXES",
        (
            recording("inside", {"celery": f"=={celery}"}, calls),
            recording("newer-upstream", {"celery": f">{celery}"}, calls),
            recording("missing-dist", {"no-such-distribution-airflow-ha": ">=0"}, calls),
        ),
    )
    with caplog.at_level(logging.INFO, logger=compat.__name__):
        assert compat.install() == ["inside"]
    assert calls == ["inside"]
    assert f"newer-upstream not applied: celery {celery} not >{celery}" in caplog.text
    assert "no-such-distribution-airflow-ha not installed" in caplog.text
    assert compat.install() == ["inside"] and calls == ["inside"]  # once per process


def test_the_skip_list_leaves_named_fixes_out_and_names_unknown_ones(fresh, caplog):
    calls: list[str] = []
    fresh.setattr(compat, "FIXES", (recording("a", {}, calls), recording("b", {}, calls)))
    fresh.setenv(compat.SKIP_ENV, "b, typo")
    with caplog.at_level(logging.INFO, logger=compat.__name__):
        assert compat.install() == ["a"]
    assert calls == ["a"]
    assert "names no compat fix: ['typo'] (known: ['a', 'b'])" in caplog.text
