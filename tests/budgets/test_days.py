"""Budget days start at midnight in BUDGETS_TIMEZONE: pure functions of `now`."""

from __future__ import annotations

import datetime as dt

from budgets.days import budget_day, day_bounds, day_key, resets_at

UTC = dt.UTC


def test_day_boundary_in_tokyo_falls_at_1500_utc():
    before = dt.datetime(2025, 1, 31, 14, 59, 59, tzinfo=UTC)
    after = dt.datetime(2025, 1, 31, 15, 0, 0, tzinfo=UTC)
    assert day_key(before, "Asia/Tokyo") == "20250131"
    assert day_key(after, "Asia/Tokyo") == "20250201"
    assert resets_at(before, "Asia/Tokyo") == after


def test_day_boundary_west_of_utc_keeps_the_previous_day_after_utc_midnight():
    now = dt.datetime(2025, 6, 2, 3, 30, tzinfo=UTC)  # 23:30 on June 1 in New York (EDT)
    assert budget_day(now, "America/New_York") == dt.date(2025, 6, 1)
    assert day_key(now, "UTC") == "20250602"
    assert resets_at(now, "America/New_York") == dt.datetime(2025, 6, 2, 4, 0, tzinfo=UTC)


def test_a_day_with_a_dst_change_lasts_23_hours_and_resets_at_local_midnight():
    start, end = day_bounds(dt.date(2025, 3, 30), "Europe/Paris")
    assert end.astimezone(UTC) - start.astimezone(UTC) == dt.timedelta(hours=23)
    assert end.astimezone(UTC) == dt.datetime(2025, 3, 30, 22, 0, tzinfo=UTC)


def test_utc_is_the_default_zone(settings):
    settings.BUDGETS_TIMEZONE = "UTC"
    now = dt.datetime(2025, 1, 1, 23, 59, tzinfo=UTC)
    assert day_key(now) == "20250101"
    assert resets_at(now) == dt.datetime(2025, 1, 2, tzinfo=UTC)
