"""Reads: a user's quota and effective limits, and sums over the usage ledger."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from budgets.days import budget_zone, day_bounds
from budgets.models import (
    MICROS_PER_USD,
    PROVIDER_CHOICES,
    Plan,
    ProviderCap,
    Quota,
    Team,
    TeamMembership,
    UsageRecord,
)
from budgets.scopes import Scope, member_scope, provider_scope, team_scope, user_scope

TOTAL_TOKENS = (
    F("input_tokens") + F("cache_write_tokens") + F("cache_read_tokens") + F("output_tokens")
)


@dataclass(frozen=True, slots=True)
class Limits:
    """A user's effective limits: the plan's, overridden per user, with today's extra."""

    plan_name: str
    daily_tokens: int
    daily_cost_micros: int | None
    requests_per_minute: int
    concurrent_streams: int
    max_output_tokens: int
    allowed_models: tuple[str, ...]
    extra_tokens: int
    extra_tokens_day: dt.date | None
    usage_reset_at: dt.datetime | None

    def tokens_limit_on(self, day: dt.date) -> int:
        extra = self.extra_tokens if self.extra_tokens_day == day else 0
        return self.daily_tokens + extra

    def allows(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models


def default_plan() -> Plan:
    """The default plan (recreated if someone managed to remove it)."""
    plan = Plan.objects.filter(is_default=True).first()
    if plan is None:
        plan, _ = Plan.objects.get_or_create(name="Default")
        Plan.objects.filter(pk=plan.pk).update(is_default=True)
        plan.is_default = True
    return plan


def quota_for_user(*, user_id: int) -> Quota:
    """The user's quota, created on the default plan the first time it is asked for."""
    quota = Quota.objects.select_related("plan").filter(user_id=user_id).first()
    if quota is not None:
        return quota
    if not get_user_model().objects.filter(pk=user_id).exists():
        raise ValueError(f"There is no user with id {user_id}.")
    quota, _ = Quota.objects.select_related("plan").get_or_create(
        user_id=user_id, defaults={"plan": default_plan()}
    )
    return quota


def _micros(usd: Decimal | None) -> int | None:
    return None if usd is None else int(usd * MICROS_PER_USD)


def limits_for_quota(quota: Quota) -> Limits:
    plan = quota.plan

    def pick(name: str):
        value = getattr(quota, name)
        return getattr(plan, name) if value is None else value

    return Limits(
        plan_name=plan.name,
        daily_tokens=pick("daily_tokens"),
        daily_cost_micros=_micros(pick("daily_cost_usd")),
        requests_per_minute=pick("requests_per_minute"),
        concurrent_streams=pick("concurrent_streams"),
        max_output_tokens=pick("max_output_tokens"),
        allowed_models=tuple(plan.allowed_model_list),
        extra_tokens=quota.extra_tokens,
        extra_tokens_day=quota.extra_tokens_day,
        usage_reset_at=quota.usage_reset_at,
    )


def limits_for_user(*, user_id: int) -> Limits:
    return limits_for_quota(quota_for_user(user_id=user_id))


def counted_records(*, user_id: int, day: dt.date) -> QuerySet[UsageRecord]:
    """The ledger rows that count against a user's budget on `day`.

    Cache hits charge nothing; rows before an admin's "reset today's use" no longer count.
    """
    start, end = day_bounds(day)
    reset_at = (
        Quota.objects.filter(user_id=user_id).values_list("usage_reset_at", flat=True).first()
    )
    if reset_at is not None and start <= reset_at < end:
        start = reset_at
    return UsageRecord.objects.filter(
        user_id=user_id, created_at__gte=start, created_at__lt=end, cache_hit=False
    )


def scope_records(*, scope: Scope, day: dt.date) -> QuerySet[UsageRecord]:
    """The ledger rows that count against a scope (user, member, team, provider) on `day`."""
    if scope.kind == "user":
        return counted_records(user_id=scope.user_id, day=day)  # type: ignore[arg-type]
    start, end = day_bounds(day)
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, cache_hit=False)
    if scope.kind == "member":
        return rows.filter(team_id=scope.team_id, user_id=scope.user_id)
    if scope.kind == "team":
        return rows.filter(team_id=scope.team_id)
    return rows.filter(provider=scope.provider)


def ledger_day_entries(
    *, user_id: int | None = None, day: dt.date, scope: Scope | None = None
) -> list[tuple[str, int, int]]:
    """(request_id, tokens, cost_micros) of each counted row of a user or a scope, for a rebuild."""
    if scope is None:
        rows = counted_records(user_id=user_id, day=day)  # type: ignore[arg-type]
    else:
        rows = scope_records(scope=scope, day=day)
    rows = rows.annotate(total=TOTAL_TOKENS)
    return [
        (r, int(t), int(c)) for r, t, c in rows.values_list("request_id", "total", "cost_micros")
    ]


def scope_limits(scope: Scope) -> dict[str, str | int]:
    """The cached limits of a team, member or provider scope, as the reserve script reads them.

    -1 means no such limit; rpm, concurrent and max_output 0 mean none (those are personal).
    """
    mapping: dict[str, str | int] = {
        "daily_tokens": -1,
        "daily_cost": -1,
        "rpm": 0,
        "concurrent": 0,
        "max_output": 0,
        "models": "",
    }
    if scope.kind == "team":
        team = Team.objects.filter(pk=scope.team_id).first()
        if team is None:
            mapping.update(daily_tokens=0, label=f"#{scope.team_id} (deleted)")
            return mapping
        cost = team.daily_cost_micros
        models = team.allowed_model_list
        mapping.update(
            daily_tokens=team.daily_tokens,
            daily_cost=-1 if cost is None else cost,
            models="|" + "|".join(models) + "|" if models else "",
            label=team.name,
        )
    elif scope.kind == "member":
        membership = (
            TeamMembership.objects.select_related("team")
            .filter(team_id=scope.team_id, user_id=scope.user_id)
            .first()
        )
        if membership is None:
            name = Team.objects.filter(pk=scope.team_id).values_list("name", flat=True).first()
            mapping.update(member="0", label=name or f"#{scope.team_id}")
            return mapping
        cap = membership.daily_tokens_cap
        mapping.update(
            member="1", daily_tokens=-1 if cap is None else cap, label=membership.team.name
        )
    elif scope.kind == "provider":
        cap = ProviderCap.objects.filter(provider=scope.provider).first()
        mapping.update(
            daily_cost=-1 if cap is None else cap.daily_cost_micros,
            label=dict(PROVIDER_CHOICES).get(scope.provider, scope.provider),
        )
    else:
        raise ValueError(f"scope_limits is for team, member and provider scopes, not {scope}.")
    return mapping


def teams_of_user(*, user_id: int) -> list[TeamMembership]:
    """The user's memberships, first joined first (the first is the default team to bill)."""
    return list(TeamMembership.objects.select_related("team").filter(user_id=user_id))


def default_team_id(*, user_id: int) -> int | None:
    """The team a new conversation bills by default: the user's first team, or None."""
    return TeamMembership.objects.filter(user_id=user_id).values_list("team_id", flat=True).first()


def ledger_day_totals(*, user_id: int, day: dt.date) -> tuple[int, int]:
    """(tokens, cost_micros) the ledger counts against the user on `day`."""
    sums = counted_records(user_id=user_id, day=day).aggregate(
        t=Sum(TOTAL_TOKENS), c=Sum("cost_micros")
    )
    return int(sums["t"] or 0), int(sums["c"] or 0)


def users_with_usage_on(*, day: dt.date) -> list[int]:
    start, end = day_bounds(day)
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, user__isnull=False)
    return sorted(set(rows.values_list("user_id", flat=True)))


def usage_by_day_and_model(
    *, since: dt.date, until: dt.date, user_id: int | None = None
) -> list[dict]:
    """Rows of {day, model, tokens, cost_micros, calls} between two budget days inclusive."""
    start, _ = day_bounds(since)
    _, end = day_bounds(until)
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    if user_id is not None:
        rows = rows.filter(user_id=user_id)
    return list(
        rows.annotate(day=TruncDate("created_at", tzinfo=budget_zone()))
        .values("day", "model")
        .annotate(tokens=Sum(TOTAL_TOKENS), cost_micros=Sum("cost_micros"), calls=Count("pk"))
        .order_by("day", "model")
    )


def top_users_on(*, day: dt.date, limit: int = 10) -> list[dict]:
    """The users who used the most tokens on `day`: {user_id, username, tokens, cost_micros}."""
    start, end = day_bounds(day)
    return list(
        UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end, user__isnull=False)
        .values("user_id", username=F("user__username"))
        .annotate(tokens=Sum(TOTAL_TOKENS), cost_micros=Sum("cost_micros"), calls=Count("pk"))
        .filter(~Q(tokens=0) | ~Q(cost_micros=0))
        .order_by("-tokens")[:limit]
    )


def _team_rows(*, team_id: int, since: dt.date, until: dt.date) -> QuerySet[UsageRecord]:
    start, _ = day_bounds(since)
    _, end = day_bounds(until)
    return UsageRecord.objects.filter(team_id=team_id, created_at__gte=start, created_at__lt=end)


def team_usage_by_day_and_model(*, team_id: int, since: dt.date, until: dt.date) -> list[dict]:
    """A team's rows of {day, model, tokens, cost_micros, calls} between two days inclusive."""
    return list(
        _team_rows(team_id=team_id, since=since, until=until)
        .annotate(day=TruncDate("created_at", tzinfo=budget_zone()))
        .values("day", "model")
        .annotate(tokens=Sum(TOTAL_TOKENS), cost_micros=Sum("cost_micros"), calls=Count("pk"))
        .order_by("day", "model")
    )


def team_usage_by_member(*, team_id: int, since: dt.date, until: dt.date) -> list[dict]:
    """What each person billed to a team between two days: {user_id, username, tokens, ...}.

    Former members (and deleted users, user_id None) keep their rows: the team paid for them.
    """
    return list(
        _team_rows(team_id=team_id, since=since, until=until)
        .values("user_id", username=F("user__username"))
        .annotate(tokens=Sum(TOTAL_TOKENS), cost_micros=Sum("cost_micros"), calls=Count("pk"))
        .order_by("-tokens", "username")
    )


def team_memberships(*, team_id: int) -> list[TeamMembership]:
    """A team's members with their users, first joined first."""
    return list(TeamMembership.objects.select_related("user").filter(team_id=team_id))


def team_admin_teams(*, user_id: int) -> list[Team]:
    """The teams in which the user is a team admin, by name."""
    return list(
        Team.objects.filter(
            memberships__user_id=user_id, memberships__role=TeamMembership.Role.ADMIN
        ).order_by("name")
    )


def can_view_team_usage(*, user, team_id: int) -> bool:
    """The team's team admins see its usage; so do those who may read the whole ledger
    (superusers, staff with the usage-record permission), who reach it from the dashboard."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.has_perm("budgets.view_usagerecord"):
        return Team.objects.filter(pk=team_id).exists()
    return TeamMembership.objects.filter(
        team_id=team_id, user_id=user.pk, role=TeamMembership.Role.ADMIN
    ).exists()


def teams_with_member_counts() -> QuerySet[Team]:
    """Every team with `member_count`, by name (for the dashboard's team view)."""
    return Team.objects.annotate(member_count=Count("memberships")).order_by("name")


def scopes_with_usage_on(*, day: dt.date) -> list[Scope]:
    """Every scope with ledger rows on `day`: users, members, teams and providers."""
    start, end = day_bounds(day)
    rows = UsageRecord.objects.filter(created_at__gte=start, created_at__lt=end)
    pairs = set(rows.values_list("user_id", "team_id"))
    scopes = {user_scope(u) for u, _ in pairs if u is not None}
    scopes |= {team_scope(t) for _, t in pairs if t is not None}
    scopes |= {member_scope(t, u) for u, t in pairs if u is not None and t is not None}
    scopes |= {provider_scope(p) for p in set(rows.values_list("provider", flat=True))}
    return sorted(scopes, key=lambda s: s.key)


def scope_day_totals(*, scope: Scope, day: dt.date) -> tuple[int, int]:
    """(tokens, cost_micros) the ledger counts against a scope on `day`."""
    sums = scope_records(scope=scope, day=day).aggregate(t=Sum(TOTAL_TOKENS), c=Sum("cost_micros"))
    return int(sums["t"] or 0), int(sums["c"] or 0)


def scope_labels(scopes: list[Scope]) -> dict[str, str]:
    """A name a person recognises for each scope: username, team name, 'ada in Research'."""
    user_ids = {s.user_id for s in scopes if s.user_id is not None}
    team_ids = {s.team_id for s in scopes if s.team_id is not None}
    users = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    teams = dict(Team.objects.filter(pk__in=team_ids).values_list("pk", "name"))
    labels = {}
    for s in scopes:
        user = users.get(s.user_id, f"#{s.user_id}")
        team = teams.get(s.team_id, f"team #{s.team_id}")
        labels[s.key] = {
            "user": user,
            "member": f"{user} in {team}",
            "team": team,
            "provider": dict(PROVIDER_CHOICES).get(s.provider, s.provider),
        }[s.kind]
    return labels
