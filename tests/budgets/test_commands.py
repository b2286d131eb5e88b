"""set_quota and budgets_reconcile."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from budgets import keys
from budgets.days import day_key
from budgets.models import Plan, Quota, UsageRecord
from budgets.services import budget_state_sync
from budgets.store import sync_store


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_set_quota_sets_plan_and_overrides(user, make_plan):
    make_plan(name="Pro", daily_tokens=1_000_000)
    output = run("set_quota", "ada", "--plan", "Pro", "--daily-tokens", "250000",
                 "--daily-cost", "2.50", "--rpm", "30", "--concurrent", "3")  # fmt: skip
    quota = Quota.objects.get(user=user)
    assert quota.plan.name == "Pro"
    assert (quota.daily_tokens, quota.requests_per_minute, quota.concurrent_streams) == (
        250_000, 30, 3,
    )  # fmt: skip
    assert quota.daily_cost_usd == Decimal("2.50")
    assert "250,000 tokens/day" in output
    assert "$2.50" in output


def test_set_quota_plan_as_a_value_clears_an_override(user):
    run("set_quota", "ada", "--daily-tokens", "5")
    run("set_quota", "ada", "--daily-tokens", "plan")
    assert Quota.objects.get(user=user).daily_tokens is None


def test_set_quota_changes_take_effect_in_redis_at_once(user):
    assert (
        budget_state_sync(user_id=user.id).tokens_limit
        == Plan.objects.get(is_default=True).daily_tokens
    )
    run("set_quota", "ada", "--daily-tokens", "1234")
    assert budget_state_sync(user_id=user.id).tokens_limit == 1234


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--daily-tokens", "-5"], "can't be negative"),
        (["--daily-tokens", str(10**13)], "can't exceed"),
        (["--daily-cost", "2000000"], "can't exceed $1,000,000"),
        (["--daily-cost", "-1"], "can't be negative"),
        (["--rpm", "200000"], "can't exceed 100,000"),
        (["--concurrent", "0"], "at least 1"),
        (["--daily-tokens", "lots"], "not a whole number"),
        (["--plan", "Nope"], "No plan named 'Nope'"),
    ],
)
def test_set_quota_refuses_bad_values_with_a_clear_message(user, args, message):
    with pytest.raises(CommandError, match=message.replace("$", r"\$")):
        run("set_quota", "ada", *args)
    assert Quota.objects.filter(user=user, daily_tokens__isnull=False).count() == 0


def test_set_quota_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        run("set_quota", "ghost", "--rpm", "5")


def _ledger_row(user, request_id: str, tokens: int, cost: int) -> None:
    UsageRecord.objects.create(
        user=user, model="m", provider="p", input_tokens=tokens, cost_micros=cost,
        outcome="finished", request_id=request_id,
    )  # fmt: skip


def test_reconcile_reports_agreement(user):
    _ledger_row(user, "a", 100, 10)
    budget_state_sync(user_id=user.id)  # builds today's counters from the ledger
    assert "agrees" in run("budgets_reconcile")


def test_reconcile_reports_drift_and_fix_repairs_it(user):
    _ledger_row(user, "a", 100, 10)
    budget_state_sync(user_id=user.id)
    used = keys.used_key(keys.user_scope(user.id), day_key(timezone.now()))
    sync_store().client.hset(used, mapping={"tokens": 5, "cost": 1})
    with pytest.raises(CommandError, match="1 user"):
        run("budgets_reconcile")
    output = run("budgets_reconcile", "--fix")
    assert "ada" in output
    assert "fixed" in output
    assert "agrees" in run("budgets_reconcile")
    state = budget_state_sync(user_id=user.id)
    assert (state.tokens_used, state.cost_used_micros) == (100, 10)


def test_reconcile_fix_rebuilds_missing_counters(user):
    _ledger_row(user, "a", 100, 10)
    with pytest.raises(CommandError):
        run("budgets_reconcile")
    run("budgets_reconcile", "--fix")
    assert "agrees" in run("budgets_reconcile")
