"""The harness's one way to wait: poll a predicate until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError, AssertionError):
    """A wait ran out. A ``TimeoutError`` to the launchers that turn it into a server-start error, and a
    failed assertion to pytest and the scenarios."""


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that;
    raise :class:`WaitTimeout` naming ``what`` after ``timeout`` seconds (the predicate gets one last call
    at the deadline, so a slow predicate still has its chance)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
