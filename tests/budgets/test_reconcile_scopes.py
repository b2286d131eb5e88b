"""budgets_reconcile over team, member and provider scopes, next to people's own budgets."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from budgets import keys
from budgets.days import day_key
from budgets.models import Team, TeamMembership, UsageRecord
from budgets.scopes import member_scope, provider_scope, team_scope, user_scope
from budgets.services import budget_state_sync, scope_usage_sync
from budgets.store import sync_store


def run(*args) -> str:
    out = StringIO()
    call_command("budgets_reconcile", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def team_call(user):
    team = Team.objects.create(name="Research", daily_tokens=100_000)
    TeamMembership.objects.create(team=team, user=user)
    UsageRecord.objects.create(
        user=user, team=team, model="claude-x", provider="anthropic", input_tokens=300,
        cost_micros=40, outcome="finished", request_id="rc1",
    )  # fmt: skip
    budget_state_sync(user_id=user.id)  # each scope's counters, built from the ledger
    for scope in (team_scope(team.pk), member_scope(team.pk, user.id), provider_scope("anthropic")):
        scope_usage_sync(scope=scope)
    return team


def _used(scope):
    return sync_store().client.hgetall(keys.used_key(scope, day_key(timezone.now())))


def test_every_scope_agrees_after_a_rebuild(team_call):
    assert "agrees" in run()


@pytest.mark.parametrize("kind", ["team", "member", "provider"])
def test_drift_of_a_team_member_or_provider_is_reported_and_fixed(team_call, user, kind):
    scope = {
        "team": team_scope(team_call.pk),
        "member": member_scope(team_call.pk, user.id),
        "provider": provider_scope("anthropic"),
    }[kind]
    sync_store().client.hset(keys.used_key(scope, day_key(timezone.now())), "tokens", 7)
    with pytest.raises(CommandError, match=r"0 user.* and 1 team, member or provider budget"):
        run()
    output = run("--fix")
    assert f"({scope.key}): Redis 7 tokens" in output
    assert "-> fixed" in output
    assert "agrees" in run()
    assert _used(scope)["tokens"] == "300"
    assert _used(user_scope(user.id))["tokens"] == "300"


def test_labels_name_the_member_and_team(team_call, user):
    scope = member_scope(team_call.pk, user.id)
    sync_store().client.hset(keys.used_key(scope, day_key(timezone.now())), "tokens", 1)
    assert "ada in Research" in run("--fix")


def test_missing_team_counters_are_left_to_the_next_reservation(user):
    team = Team.objects.create(name="Cold", daily_tokens=100_000)
    TeamMembership.objects.create(team=team, user=user)
    UsageRecord.objects.create(
        user=user, team=team, model="m", provider="openai", input_tokens=5,
        outcome="finished", request_id="rc2",
    )  # fmt: skip
    budget_state_sync(user_id=user.id)  # only the person's counters exist
    assert "agrees" in run()
    assert scope_usage_sync(scope=team_scope(team.pk)).tokens_used == 5  # rebuilt when read
