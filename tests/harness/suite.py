"""The two test suites: core (what ``scripts/test`` and CI run) and full (core + the ``extended`` tests).

CI has 90 minutes on a 2-core machine for every layer, the real-cluster stage included. Each claim the README
makes is proven once in the core suite; a test marked ``extended`` proves one that a core test already
proves, in another variant (another node, another policy, another failure of the same kind), or measures what
the product avoids (a mitigation switched off). ``AIRFLOW_HA_SUITE=full scripts/test`` runs them all; a test
named on the command line (``path::name``) runs whatever the suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "AIRFLOW_HA_SUITE"
SUITES = ("core", "full")


def selected() -> str:
    suite = os.environ.get(ENV, "core")
    if suite not in SUITES:
        raise pytest.UsageError(f"{ENV}={suite!r}: expected one of {', '.join(SUITES)}")
    return suite


def _named(config: pytest.Config) -> list[tuple[Path, str]]:
    """The tests given by id on the command line: (file, name prefix)."""
    named = []
    for arg in config.args:
        path, sep, name = arg.partition("::")
        if sep:
            named.append(((config.invocation_params.dir / path).resolve(), name))
    return named


def skip_extended(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the core suite, skip (with the reason, listed by ``-ra``) every extended test not named by id."""
    if selected() == "full":
        return
    named = _named(config)
    reason = f"extended suite ({ENV}=full runs it; the core suite proves the same claim once)"
    for item in items:
        if not item.get_closest_marker("extended"):
            continue
        name = item.nodeid.split("::", 1)[-1]
        if not any(item.path == path and name.startswith(prefix) for path, prefix in named):
            item.add_marker(pytest.mark.skip(reason=reason))
