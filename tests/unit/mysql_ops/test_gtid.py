from __future__ import annotations

import pytest

from airflow_ha.mysql_ops.gtid import GtidSet, GtidSetError

A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
B = "4e11fa47-71ca-11e1-9e33-c80aa9429562"


def test_parse_and_print_round_trip():
    s = GtidSet.parse(f"{A.upper()}:1-5:11-18,\n{B}:1-3")
    assert str(s) == f"{A}:1-5:11-18,{B}:1-3"
    assert len(s) == 5 + 8 + 3


def test_empty_and_whitespace():
    assert not GtidSet.parse("")
    assert not GtidSet.parse(None)
    assert not GtidSet.parse(" \n")
    assert len(GtidSet.parse("")) == 0


def test_adjacent_and_overlapping_intervals_merge():
    assert str(GtidSet.parse(f"{A}:1-3:4-6:5-9:12")) == f"{A}:1-9:12"


def test_tags_are_their_own_sequences():
    s = GtidSet.parse(f"{A}:1-3:mytag:1-2:5")
    assert len(s) == 6
    assert GtidSet.parse(f"{A}:mytag:1-2") <= s
    assert not GtidSet.parse(f"{A}:other:1") <= s
    assert str(s) == f"{A}:1-3:mytag:1-2:5"


@pytest.mark.parametrize(
    ("small", "big", "expected"),
    [
        ("", "", True),
        ("", f"{A}:1", True),
        (f"{A}:1", "", False),
        (f"{A}:1-5", f"{A}:1-10", True),
        (f"{A}:1-10", f"{A}:1-5", False),
        (f"{A}:3-4", f"{A}:1-2:5-9", False),  # a hole
        (f"{A}:1-5", f"{A}:1-5,{B}:1", True),
        (f"{A}:1-5,{B}:1", f"{A}:1-5", False),
        (f"{A}:1-5,{B}:2", f"{A}:1-9,{B}:1-3", True),
    ],
)
def test_subset(small, big, expected):
    assert (GtidSet.parse(small) <= GtidSet.parse(big)) is expected
    assert (GtidSet.parse(big) >= GtidSet.parse(small)) is expected


def test_union():
    u = GtidSet.parse(f"{A}:1-5") | GtidSet.parse(f"{A}:6-7,{B}:1")
    assert str(u) == f"{A}:1-7,{B}:1"


@pytest.mark.parametrize("bad", ["nope:1", f"{A}:0", f"{A}:5-3", f"{A}:1-x", f"{A}:Bad-Tag!:1"])
def test_bad_sets_raise(bad):
    with pytest.raises(GtidSetError):
        GtidSet.parse(bad)
