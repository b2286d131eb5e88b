"""`manage.py set_team_quota`: every option, and every bad input refused with nothing changed."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from budgets import keys
from budgets.models import Team, TeamMembership
from budgets.scopes import member_scope, team_scope
from budgets.services import scope_usage_sync
from budgets.store import sync_store


def run(*args) -> str:
    out = StringIO()
    call_command("set_team_quota", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def team(user, other_user):
    team = Team.objects.create(name="Research", daily_tokens=100_000, daily_cost_usd=Decimal("5"))
    TeamMembership.objects.create(team=team, user=user, role="admin")
    TeamMembership.objects.create(team=team, user=other_user, daily_tokens_cap=40_000)
    return team


def _state(team: Team) -> tuple:
    team.refresh_from_db()
    caps = dict(team.memberships.values_list("user__username", "daily_tokens_cap"))
    return team.daily_tokens, team.daily_cost_usd, caps


def test_sets_daily_tokens_and_cost_and_prints_them(team):
    output = run("Research", "--daily-tokens", "250_000", "--daily-cost", "$12.50")
    assert _state(team)[:2] == (250_000, Decimal("12.50"))
    assert "Research: 250,000 tokens/day; cost limit $12.50/day." in output
    assert "grace (member): cap 40,000 tokens/day" in output
    assert "ada (team admin): no cap" in output


def test_none_clears_the_cost_limit(team):
    output = run("Research", "--daily-cost", "none")
    assert _state(team)[1] is None
    assert "cost limit none/day" in output


def test_sets_and_clears_a_member_cap(team):
    run("Research", "--member", "ada", "--member-cap", "30000")
    assert _state(team)[2]["ada"] == 30_000
    run("Research", "--member", "grace", "--member-cap", "none")
    assert _state(team)[2]["grace"] is None


def test_lowering_budget_and_cap_together_is_accepted(team):
    run("Research", "--daily-tokens", "20000", "--member", "grace", "--member-cap", "20000")
    assert _state(team) == (20_000, Decimal("5"), {"ada": None, "grace": 20_000})


def test_without_options_prints_the_teams_limits(team):
    assert "Research: 100,000 tokens/day; cost limit $5.00/day." in run("Research")
    assert _state(team)[0] == 100_000


def test_a_change_drops_the_cached_limits(team, other_user):
    assert scope_usage_sync(scope=team_scope(team.pk)).tokens_limit == 100_000  # cached now
    client = sync_store().client
    client.hset(keys.limits_key(member_scope(team.pk, other_user.id)), "member", "1")
    run("Research", "--daily-tokens", "60000", "--member", "grace", "--member-cap", "1000")
    assert not client.exists(keys.limits_key(member_scope(team.pk, other_user.id)))
    assert scope_usage_sync(scope=team_scope(team.pk)).tokens_limit == 60_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Nope"], "No team named 'Nope'. Teams: Research."),
        (["Research", "--member", "ada"], "--member and --member-cap go together"),
        (["Research", "--member-cap", "10"], "--member and --member-cap go together"),
        (["Research", "--member", "nobody", "--member-cap", "10"], "No user named 'nobody'."),
        (
            ["Research", "--member", "alan", "--member-cap", "10"],
            "alan is not a member of Research",
        ),
        (["Research", "--daily-tokens", "-5"], "Daily tokens can't be negative."),
        (["Research", "--daily-tokens", "10000000000000"], "can't exceed 1,000,000,000,000"),
        (["Research", "--daily-tokens", "lots"], "'lots' is not a whole number of tokens."),
        (["Research", "--daily-cost", "-1"], "A daily cost can't be negative."),
        (["Research", "--daily-cost", "2000000"], "A daily cost can't exceed $1,000,000."),
        (["Research", "--daily-cost", "cheap"], "'cheap' is not an amount of US dollars"),
        (["Research", "--daily-cost", "nan"], "'nan' is not an amount of US dollars"),
        (["Research", "--member", "ada", "--member-cap", "-1"], "ada: Daily tokens can't be neg"),
        (
            ["Research", "--member", "ada", "--member-cap", "200000"],
            "ada: A member's cap (200,000 tokens) can't exceed the team's daily budget",
        ),
        (
            ["Research", "--daily-tokens", "30000"],
            "grace's cap (40,000 tokens) is above the team's daily budget (30,000 tokens)",
        ),
    ],
)
def test_bad_input_is_refused_and_nothing_changes(team, django_user_model, args, message):
    django_user_model.objects.create_user("alan")
    before = _state(team)
    with pytest.raises(CommandError) as refused:
        run(*args)
    assert message in str(refused.value)
    assert _state(team) == before


def test_a_team_without_members_is_refused(db):
    team = Team.objects.create(name="Empty", daily_tokens=1000)  # e.g. every member deleted
    with pytest.raises(CommandError, match="A team needs at least one member"):
        run("Empty", "--daily-tokens", "2000")
    team.refresh_from_db()
    assert team.daily_tokens == 1000
