"""The harness's wait helper: what it returns, when it gives up, and what a failed wait says."""

from __future__ import annotations

import time

import pytest

from tests.harness.waiting import WaitAborted, WaitTimeout, wait_until


def test_returns_the_first_truthy_value():
    values = iter([None, 0, [], "found"])
    assert wait_until(lambda: next(values), 5, "a value", interval=0) == "found"


def test_times_out_naming_what_it_waited_for_and_is_an_assertion_and_a_timeout():
    with pytest.raises(WaitTimeout, match="waiting for the moon") as info:
        wait_until(lambda: False, 0.05, "the moon", interval=0.01)
    assert isinstance(info.value, AssertionError) and isinstance(info.value, TimeoutError)


def test_the_predicate_gets_a_last_call_after_the_deadline_passed_in_a_sleep():
    calls = []

    def second_call_holds():
        calls.append(time.monotonic())
        return len(calls) == 2

    assert wait_until(second_call_holds, 0.05, "the second call", interval=0.1)
    assert calls[1] - calls[0] >= 0.05


def test_abort_ends_the_wait_at_once_with_its_reason():
    started = time.monotonic()
    with pytest.raises(WaitAborted, match="worker exited 1 while waiting for ready"):
        wait_until(lambda: False, 60, "ready", abort=lambda: "worker exited 1")
    assert time.monotonic() - started < 5


def test_abort_is_not_asked_once_the_predicate_holds():
    assert wait_until(lambda: True, 1, "x", abort=lambda: "must not be asked") is True


def test_explain_is_appended_to_a_timeout_and_to_an_abort():
    with pytest.raises(WaitTimeout) as timeout:
        wait_until(lambda: False, 0, "ids", explain=lambda: "3 missing: a, b, c")
    assert str(timeout.value).endswith("waiting for ids\n3 missing: a, b, c")
    with pytest.raises(WaitAborted) as aborted:
        wait_until(lambda: False, 60, "ids", abort=lambda: "gone", explain=lambda: "log tail")
    assert str(aborted.value) == "gone while waiting for ids\nlog tail"
