"""Usage reports for the pages: ledger rows shaped into tables and charts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from budgets import charts, selectors
from budgets.days import budget_day
from budgets.models import MICROS_PER_USD, PROVIDER_CHOICES, ProviderCap, UsageRecord
from budgets.scopes import provider_scope, team_scope
from budgets.services import scope_usage_sync

DAYS = 30
RECENT_CALLS = 20


def _series(rows: list[dict], days: list[dt.date], metric: str) -> dict[str, list[float]]:
    """Per model, the metric for each day; models beyond the palette are summed as 'other'."""
    totals: dict[str, int] = {}
    for row in rows:
        totals[row["model"]] = totals.get(row["model"], 0) + row["tokens"]
    ranked = sorted(totals, key=lambda m: -totals[m])
    keep = ranked[: charts.MAX_SERIES - 1] if len(ranked) > charts.MAX_SERIES else ranked
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, list[float]] = {m: [0.0] * len(days) for m in keep}
    for row in rows:
        name = row["model"] if row["model"] in series else "other"
        series.setdefault(name, [0.0] * len(days))
        i = index.get(row["day"])
        if i is not None:
            series[name][i] += float(row[metric] or 0)
    return series


def _by_model(rows: list[dict]) -> list[dict]:
    merged: dict[str, dict] = {}
    for row in rows:
        entry = merged.setdefault(
            row["model"], {"model": row["model"], "tokens": 0, "cost_micros": 0, "calls": 0}
        )
        for name in ("tokens", "cost_micros", "calls"):
            entry[name] += int(row[name] or 0)
    result = sorted(merged.values(), key=lambda e: -e["tokens"])
    for entry in result:
        entry["cost_usd"] = Decimal(entry["cost_micros"]) / MICROS_PER_USD
    return result


def recent_calls(*, user_id: int, limit: int = RECENT_CALLS) -> list[dict]:
    """The user's latest ledger rows with the budget each was billed to (a team or their own)."""
    rows = (
        UsageRecord.objects.filter(user_id=user_id)
        .order_by("-created_at", "-pk")
        .values(
            "created_at", "model", "outcome", "batch", "cost_micros", "team_id", "team__name",
            "input_tokens", "cache_write_tokens", "cache_read_tokens", "output_tokens",
        )[:limit]
    )  # fmt: skip
    return [
        {
            "created_at": row["created_at"],
            "model": row["model"],
            "outcome": row["outcome"],
            "batch": row["batch"],
            "billed_to": f"Team {row['team__name']}" if row["team_id"] else "Personal",
            "tokens": row["input_tokens"]
            + row["cache_write_tokens"]
            + row["cache_read_tokens"]
            + row["output_tokens"],
            "cost_usd": Decimal(row["cost_micros"]) / MICROS_PER_USD,
        }
        for row in rows
    ]


def usage_report(*, user_id: int | None, now: dt.datetime | None = None, days: int = DAYS) -> dict:
    """Today and the last `days` days by model (one user, or everyone when user_id is None)."""
    today = budget_day(now or timezone.now())
    day_list = [today - dt.timedelta(days=days - 1 - i) for i in range(days)]
    rows = selectors.usage_by_day_and_model(since=day_list[0], until=today, user_id=user_id)
    today_rows = [row for row in rows if row["day"] == today]
    return {
        "today": today,
        "recent_calls": [] if user_id is None else recent_calls(user_id=user_id),
        "today_by_model": _by_model(today_rows),
        **_period_by_model(rows, day_list, whose=""),
    }


def _period_by_model(rows: list[dict], day_list: list[dt.date], *, whose: str) -> dict:
    """The period's totals by model and its two charts (tokens and cost per day by model)."""
    period = _by_model(rows)
    days = len(day_list)
    return {
        "period_by_model": period,
        "period_tokens": sum(e["tokens"] for e in period),
        "period_cost_usd": sum((e["cost_usd"] for e in period), Decimal(0)),
        "tokens_chart": charts.stacked_columns(
            title=f"{whose}tokens per day by model, last {days} days".capitalize(),
            days=day_list,
            series=_series(rows, day_list, "tokens"),
            fmt=charts.format_tokens,
        ),
        "cost_chart": charts.stacked_columns(
            title=f"{whose}cost per day by model, last {days} days".capitalize(),
            days=day_list,
            series=_series(rows, day_list, "cost_micros"),
            fmt=charts.format_usd_micros,
        ),
    }


def top_users_report(*, now: dt.datetime | None = None, limit: int = 10) -> dict:
    today = budget_day(now or timezone.now())
    users = selectors.top_users_on(day=today, limit=limit)
    for entry in users:
        entry["cost_usd"] = Decimal(entry["cost_micros"] or 0) / MICROS_PER_USD
    return {
        "top_users": users,
        "top_users_chart": charts.horizontal_bars(
            title="Top users today by tokens",
            items=[(u["username"] or f"#{u['user_id']}", float(u["tokens"] or 0)) for u in users],
            fmt=charts.format_tokens,
        ),
    }


def _with_usd(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["tokens"] = int(row["tokens"] or 0)
        row["cost_usd"] = Decimal(row["cost_micros"] or 0) / MICROS_PER_USD
    return rows


def _member_rows(memberships: list, usage: list[dict]) -> list[dict]:
    """Every member (with or without use), then anyone else who billed the team."""
    by_user = {row["user_id"]: row for row in usage}
    rows = []
    for m in memberships:
        used = by_user.pop(m.user_id, {})
        tokens = int(used.get("tokens") or 0)
        cap = m.daily_tokens_cap
        rows.append(
            {
                "username": m.user.get_username(),
                "role": "team admin" if m.is_team_admin else "member",
                "cap": cap,
                "cap_percent": None if not cap else min(100, int(tokens * 100 / cap)),
                "tokens": tokens,
                "calls": int(used.get("calls") or 0),
                "cost_usd": used.get("cost_usd", Decimal(0)),
            }
        )
    for row in by_user.values():
        rows.append(
            {
                "username": row["username"] or "(deleted user)",
                "role": "former member",
                "cap": None,
                "cap_percent": None,
                "tokens": row["tokens"],
                "calls": row["calls"],
                "cost_usd": row["cost_usd"],
            }
        )
    return sorted(rows, key=lambda r: (-r["tokens"], r["username"]))


def team_usage_report(*, team_id: int, now: dt.datetime | None = None, days: int = DAYS) -> dict:
    """A team's use today by member and over the last `days` days by day, model and member."""
    today = budget_day(now or timezone.now())
    day_list = [today - dt.timedelta(days=days - 1 - i) for i in range(days)]
    rows = selectors.team_usage_by_day_and_model(team_id=team_id, since=day_list[0], until=today)
    memberships = selectors.team_memberships(team_id=team_id)
    today_members = _with_usd(
        selectors.team_usage_by_member(team_id=team_id, since=today, until=today)
    )
    period_members = _with_usd(
        selectors.team_usage_by_member(team_id=team_id, since=day_list[0], until=today)
    )
    return {
        "today": today,
        "days": days,
        "today_by_member": _member_rows(memberships, today_members),
        "today_by_model": _by_model([row for row in rows if row["day"] == today]),
        "period_by_member": period_members,
        **_period_by_model(rows, day_list, whose="team "),
        "members_chart": charts.horizontal_bars(
            title=f"Tokens by member, last {days} days",
            items=[
                (row["username"] or "(deleted user)", float(row["tokens"]))
                for row in period_members[:20]
            ],
            fmt=charts.format_tokens,
        ),
    }


def teams_today_report() -> dict:
    """Today's use of every team and of every provider against its cap, for the dashboard."""
    caps = {cap.provider: cap for cap in ProviderCap.objects.all()}
    return {
        "teams_today": [
            {"team": team, "usage": scope_usage_sync(scope=team_scope(team.pk))}
            for team in selectors.teams_with_member_counts()
        ],
        "providers_today": [
            {
                "provider": provider,
                "label": label,
                "cap": caps.get(provider),
                "usage": scope_usage_sync(scope=provider_scope(provider)),
            }
            for provider, label in PROVIDER_CHOICES
        ],
    }
