"""The business-day calendar: weekends and holidays skipped, catch-up lists computed on real dates."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from airflow_ha.edw.business_days import (
    business_day_on_or_before,
    business_days_between,
    is_business_day,
    missed_business_days,
    next_business_day,
    previous_business_day,
)

D = date.fromisoformat
CHRISTMAS_2026 = {D("2026-12-25"), D("2026-12-26")}  # Friday and Saturday
TARGET2_2026_2027 = {
    D("2026-01-01"),
    D("2026-04-03"),  # Good Friday
    D("2026-04-06"),  # Easter Monday
    D("2026-05-01"),
    D("2026-12-25"),
    D("2026-12-26"),
    D("2027-01-01"),
    D("2027-03-26"),
    D("2027-03-29"),
}


def test_weekdays_weekends_and_holidays():
    assert is_business_day(D("2026-12-24"))  # Thursday
    assert not is_business_day(D("2026-12-26"))  # Saturday
    assert not is_business_day(D("2026-12-27"))  # Sunday
    assert is_business_day(D("2026-12-25"))  # a Friday, without a holiday list
    assert not is_business_day(D("2026-12-25"), CHRISTMAS_2026)


def test_catch_up_across_a_holiday_and_a_weekend():
    # Last success Thursday 24th; Friday 25th is a holiday; Saturday, Sunday; Tuesday's run.
    assert missed_business_days(D("2026-12-24"), D("2026-12-29"), CHRISTMAS_2026) == [D("2026-12-28"), D("2026-12-29")]


def test_catch_up_without_the_holiday_list_includes_the_friday():
    assert missed_business_days(D("2026-12-24"), D("2026-12-29")) == [D("2026-12-25"), D("2026-12-28"), D("2026-12-29")]


def test_catch_up_across_easter():
    # Thursday before Good Friday to the Wednesday after Easter Monday.
    assert missed_business_days(D("2026-04-02"), D("2026-04-08"), TARGET2_2026_2027) == [
        D("2026-04-07"),
        D("2026-04-08"),
    ]


def test_catch_up_across_the_year_end():
    assert missed_business_days(D("2026-12-30"), D("2027-01-05"), TARGET2_2026_2027) == [
        D("2026-12-31"),
        D("2027-01-04"),
        D("2027-01-05"),
    ]


def test_a_long_outage_lists_every_business_day_in_order():
    days = missed_business_days(D("2026-03-27"), D("2026-04-10"), TARGET2_2026_2027)
    assert days == [
        D("2026-03-30"),
        D("2026-03-31"),
        D("2026-04-01"),
        D("2026-04-02"),
        D("2026-04-07"),
        D("2026-04-08"),
        D("2026-04-09"),
        D("2026-04-10"),
    ]


def test_nothing_missed():
    assert missed_business_days(D("2026-12-29"), D("2026-12-29"), CHRISTMAS_2026) == []  # ran already
    assert missed_business_days(D("2026-12-30"), D("2026-12-29"), CHRISTMAS_2026) == []  # ahead (a later date ran)
    assert missed_business_days(D("2026-12-24"), D("2026-12-27"), CHRISTMAS_2026) == []  # only non-business days since


def test_friday_to_the_next_monday():
    assert missed_business_days(D("2026-12-18"), D("2026-12-21")) == [D("2026-12-21")]


def test_up_to_a_sunday_stops_at_the_friday():
    assert missed_business_days(D("2026-12-15"), D("2026-12-20")) == [D("2026-12-16"), D("2026-12-17"), D("2026-12-18")]


@pytest.mark.parametrize(
    ("up_to", "expected"),
    [
        ("2026-12-29", ["2026-12-29"]),  # a business day: the job starts with it
        ("2026-12-26", []),  # a Saturday
        ("2026-12-25", []),  # a holiday
    ],
)
def test_a_job_that_never_succeeded_starts_at_up_to(up_to, expected):
    assert missed_business_days(None, D(up_to), CHRISTMAS_2026) == [D(day) for day in expected]


def test_previous_next_and_on_or_before():
    assert previous_business_day(D("2026-12-28"), CHRISTMAS_2026) == D("2026-12-24")  # Monday -> Thursday
    assert previous_business_day(D("2026-12-29"), CHRISTMAS_2026) == D("2026-12-28")
    assert next_business_day(D("2026-12-24"), CHRISTMAS_2026) == D("2026-12-28")
    assert next_business_day(D("2026-12-31"), TARGET2_2026_2027) == D("2027-01-04")
    assert business_day_on_or_before(D("2026-12-27"), CHRISTMAS_2026) == D("2026-12-24")  # Sunday
    assert business_day_on_or_before(D("2026-12-25"), CHRISTMAS_2026) == D("2026-12-24")  # holiday
    assert business_day_on_or_before(D("2026-12-29"), CHRISTMAS_2026) == D("2026-12-29")


def test_agrees_with_counting_day_by_day_over_two_years():
    start = D("2026-01-01")
    for offset in range(0, 730, 7):
        last = start + timedelta(days=offset)
        up_to = last + timedelta(days=offset % 23)
        expected = [
            last + timedelta(days=n)
            for n in range(1, (up_to - last).days + 1)
            if (last + timedelta(days=n)).weekday() < 5 and last + timedelta(days=n) not in TARGET2_2026_2027
        ]
        assert missed_business_days(last, up_to, TARGET2_2026_2027) == expected
        assert business_days_between(last + timedelta(days=1), up_to, TARGET2_2026_2027) == expected
