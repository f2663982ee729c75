"""Session fixtures whose setup is long (start a cluster, build images and install a release) run inside the
first test that uses them, under that test's pytest-timeout. ``extend_first_users`` adds each fixture's own
budget to the timeout of the first test that will set it up, so a slow machine fails only when the fixture
itself overruns its budget, not because a test's 900 s also had to hold the image build."""

from __future__ import annotations

import pytest


def _timeout(item: pytest.Item, default: float) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is None:
        return default
    return float(marker.args[0] if marker.args else marker.kwargs.get("timeout", default))


def extend_first_users(items: list[pytest.Item], default: float, budgets: dict[str, float]) -> None:
    """For each fixture name in ``budgets``: the first item, in run order, that uses it and is not skipped
    outright gets its timeout raised by the budget (items a skip marker stops never set anything up)."""
    extra: dict[int, float] = {}
    for fixture, budget in budgets.items():
        first = next(
            (i for i, item in enumerate(items) if fixture in item.fixturenames and not item.get_closest_marker("skip")),
            None,
        )
        if first is not None:
            extra[first] = extra.get(first, 0.0) + budget
    for index, budget in extra.items():
        current = _timeout(items[index], default)
        if current > 0:  # 0 means no timeout: nothing to extend
            # prepended, so it is the closest marker and wins over the module's or the function's own
            items[index].add_marker(pytest.mark.timeout(current + budget), append=False)
