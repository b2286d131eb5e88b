"""Budget days: they start at midnight in BUDGETS_TIMEZONE. Pure functions of `now`."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings


def budget_zone(name: str | None = None) -> ZoneInfo:
    return ZoneInfo(name or settings.BUDGETS_TIMEZONE)


def budget_day(now: dt.datetime, tz: str | None = None) -> dt.date:
    """The budget day that the aware instant `now` falls in."""
    if now.tzinfo is None:
        raise ValueError("budget_day needs an aware datetime")
    return now.astimezone(budget_zone(tz)).date()


def day_key(now: dt.datetime, tz: str | None = None) -> str:
    """The day part of Redis keys, e.g. '20250131'."""
    return budget_day(now, tz).strftime("%Y%m%d")


def parse_day_key(key: str) -> dt.date:
    return dt.datetime.strptime(key, "%Y%m%d").date()


def day_bounds(day: dt.date, tz: str | None = None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a budget day as aware datetimes (23 or 25 hours across DST)."""
    zone = budget_zone(tz)
    start = dt.datetime.combine(day, dt.time.min, tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=zone)
    return start, end


def resets_at(now: dt.datetime, tz: str | None = None) -> dt.datetime:
    """The next midnight in the budget time zone, as an aware datetime in UTC."""
    return day_bounds(budget_day(now, tz), tz)[1].astimezone(dt.UTC)
