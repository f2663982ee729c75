"""The EDW business-day calendar: Monday to Friday, minus a list of holidays.

Pure functions on :class:`datetime.date`; ``holidays`` is any collection of dates (the catalogue's
``holidays`` list). A holiday that falls on a weekend changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, timedelta

SATURDAY = 5  # date.weekday(): Monday is 0

ONE_DAY = timedelta(days=1)


def is_business_day(day: date, holidays: Collection[date] = ()) -> bool:
    """Monday to Friday and not a holiday."""
    return day.weekday() < SATURDAY and day not in holidays


def next_business_day(day: date, holidays: Collection[date] = ()) -> date:
    """The first business day strictly after ``day``."""
    day += ONE_DAY
    while not is_business_day(day, holidays):
        day += ONE_DAY
    return day


def previous_business_day(day: date, holidays: Collection[date] = ()) -> date:
    """The last business day strictly before ``day``."""
    day -= ONE_DAY
    while not is_business_day(day, holidays):
        day -= ONE_DAY
    return day


def business_day_on_or_before(day: date, holidays: Collection[date] = ()) -> date:
    """``day`` itself when it is a business day, else the last business day before it.

    What a business-day job has done by the end of ``day`` at the latest: on a Saturday or a holiday
    the newest business date there can be is the one before.
    """
    return day if is_business_day(day, holidays) else previous_business_day(day, holidays)


def days_between(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last``, both included (empty when ``first > last``)."""
    return [first + ONE_DAY * n for n in range((last - first).days + 1)]


def business_days_between(first: date, last: date, holidays: Collection[date] = ()) -> list[date]:
    """Every business day from ``first`` to ``last``, both included (empty when ``first > last``)."""
    return [day for day in days_between(first, last) if is_business_day(day, holidays)]


def missed_business_days(last_success: date | None, up_to: date, holidays: Collection[date] = ()) -> list[date]:
    """The business days a job still has to run, oldest first: the n catch-up runs.

    Every business day after ``last_success`` up to and including ``up_to``; weekends and holidays
    are skipped. Empty when ``last_success`` is ``up_to`` or later (nothing missed).

    ``last_success`` is ``None`` for a job that has never succeeded: then there is no history to
    catch up from, and the job starts at ``up_to``, so the result is ``[up_to]`` when ``up_to`` is a
    business day and ``[]`` otherwise. (Inventing a start date would silently load an arbitrary
    backlog; an initial backfill is a deliberate act, done by recording the day before the first
    wanted business date as a success, or with dated runs.)
    """
    if last_success is None:
        return [up_to] if is_business_day(up_to, holidays) else []
    return business_days_between(last_success + ONE_DAY, up_to, holidays)
