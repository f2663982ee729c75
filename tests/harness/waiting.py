"""The harness's one way to wait: poll a predicate until it holds or a deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError, AssertionError):
    """A wait ran out. A ``TimeoutError`` to the launchers that turn it into a server-start error, and a
    failed assertion to pytest and the scenarios."""


class WaitAborted(AssertionError):
    """A wait that could no longer succeed (the process it waited on exited): failed at once, not at the
    deadline."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.2,
    *,
    abort: Callable[[], str | None] | None = None,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that;
    raise :class:`WaitTimeout` naming ``what`` after ``timeout`` seconds (the predicate gets one last call
    at the deadline, so a slow predicate still has its chance).

    ``abort`` is asked after each unmet round: a reason it returns ends the wait with :class:`WaitAborted`.
    ``explain`` adds what a failed wait should show (logs, what is still missing) to either error.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        reason = abort() if abort is not None else None
        if reason:
            raise WaitAborted(_message(f"{reason} while waiting for {what}", explain))
        if time.monotonic() >= deadline:
            raise WaitTimeout(_message(f"timed out after {timeout:.0f}s waiting for {what}", explain))
        time.sleep(interval)


def _message(head: str, explain: Callable[[], str] | None) -> str:
    detail = explain() if explain is not None else ""
    return f"{head}\n{detail}" if detail else head
