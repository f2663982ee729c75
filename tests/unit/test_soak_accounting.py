"""The soak's tally (benchmarks/soak.py ``account``) on synthetic inputs: lost, duplicated, refusals."""

from __future__ import annotations

from benchmarks.soak import account


def test_every_acknowledged_id_ran_once():
    t = account(["a", "b", "c"], [], ["c", "a", "b"])
    assert (t.acknowledged, t.completed, t.lost, t.duplicated, t.extra_runs, t.unacknowledged_runs) == (
        3, 3, 0, 0, 0, 0,
    )  # fmt: skip


def test_lost_is_acknowledged_but_never_ran():
    t = account(["a", "b", "c", "d"], [], ["a", "c"])
    assert t.completed == 2
    assert t.lost == 2
    assert t.lost_ids == ("b", "d")


def test_duplicates_count_ids_and_extra_runs_and_which_had_a_refused_publish():
    # "a" ran 3 times (its publish was refused once and sent again), "b" twice without a refusal
    t = account(["a", "b", "c"], ["a", "x"], ["a", "b", "a", "c", "b", "a"])
    assert t.duplicated == 2
    assert t.extra_runs == 3
    assert t.duplicated_after_refusal == 1
    assert t.duplicated_ids == ("a", "b")
    assert t.lost == 0
    assert t.completed == 3


def test_runs_of_never_acknowledged_ids_are_not_completions():
    # "z" was refused until abandoned, yet the first attempt had reached the queue
    t = account(["a"], ["z"], ["a", "z"])
    assert t.completed == 1
    assert t.unacknowledged_runs == 1
    assert t.lost == 0


def test_acknowledged_is_a_set_and_runs_may_be_a_generator():
    t = account(["a", "a", "b"], set(), (i for i in ["b"]))
    assert t.acknowledged == 2
    assert t.lost == 1
    assert t.lost_ids == ("a",)
