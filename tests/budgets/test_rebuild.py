"""Counters lost by Redis are rebuilt from the durable ledger, once, under a lock."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from budgets.errors import BudgetRefused
from budgets.models import UsageRecord
from budgets.selectors import ledger_day_totals
from budgets.services import budget_settle, budget_state, usage_record_create
from budgets.services.quotas import quota_reset_today
from tests.budgets.conftest import flush_budget_keys
from tests.budgets.helpers import reserve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_stores")]


async def _call(user_id: int, tokens: int, cost: int, **record) -> None:
    """One call as the turn pipeline makes it: reserve, settle, write the ledger row."""
    reservation = await reserve(user_id)
    await budget_settle(reservation=reservation, tokens_used=tokens, cost_micros=cost)
    await usage_record_create(
        user_id=user_id, conversation_id=uuid.uuid4(), message_id=1, model="claude-test",
        provider="anthropic", input_tokens=tokens - 20, cache_write_tokens=5, cache_read_tokens=5,
        output_tokens=10, cost_micros=cost, time_to_first_token_ms=100, duration_ms=900,
        retries=0, outcome="finished", cache_hit=False, request_id=reservation.request_id,
        **record,
    )  # fmt: skip


async def test_a_rebuild_after_a_flush_restores_todays_numbers_from_the_ledger(make_user):
    user = await sync_to_async(make_user)(daily_tokens=1000)
    for tokens, cost in ((150, 30), (120, 25), (130, 40)):
        await _call(user.id, tokens, cost)
    before = await budget_state(user_id=user.id)
    assert (before.tokens_used, before.cost_used_micros) == (400, 95)

    flush_budget_keys()  # what FLUSHALL (or a restart without persistence) does to them

    after = await budget_state(user_id=user.id)
    assert (after.tokens_used, after.cost_used_micros) == (400, 95)
    assert after.tokens_limit == 1000


async def test_after_a_flush_the_rebuilt_counters_still_enforce_the_limit(make_user):
    user = await sync_to_async(make_user)(daily_tokens=500)
    await _call(user.id, 200, 0)
    await _call(user.id, 200, 0)
    flush_budget_keys()
    with pytest.raises(BudgetRefused):
        await reserve(user.id)  # 400 used + 200 asked > 500


async def test_concurrent_callers_after_a_flush_rebuild_once(make_user, caplog):
    user = await sync_to_async(make_user)(daily_tokens=10**6)
    await _call(user.id, 200, 0)
    flush_budget_keys()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="budgets"):
        await asyncio.gather(*(reserve(user.id) for _ in range(30)))
    rebuilt = sorted(
        r.getMessage().split()[2] for r in caplog.records if "rebuilt" in r.getMessage()
    )
    assert rebuilt == ["provider:anthropic", f"user:{user.id}"]  # each scope once
    assert (await budget_state(user_id=user.id)).tokens_used == 200


async def test_rebuild_skips_cache_hits_and_yesterday_and_rows_before_a_reset(make_user):
    user = await sync_to_async(make_user)(daily_tokens=10**6)
    await _call(user.id, 100, 10)
    await sync_to_async(quota_reset_today)(user_ids=[user.id])
    await _call(user.id, 70, 7)
    yesterday = timezone.now() - dt.timedelta(days=1)
    await UsageRecord.objects.acreate(
        user_id=user.id, model="m", provider="p", input_tokens=999, outcome="finished",
        request_id="old", created_at=yesterday,
    )  # fmt: skip
    await UsageRecord.objects.acreate(
        user_id=user.id, model="m", provider="p", input_tokens=888, outcome="cache_hit",
        cache_hit=True, request_id="hit",
    )  # fmt: skip
    flush_budget_keys()
    state = await budget_state(user_id=user.id)
    assert (state.tokens_used, state.cost_used_micros) == (70, 7)


async def test_a_settle_that_lands_between_flush_and_rebuild_is_not_counted_twice(make_user):
    user = await sync_to_async(make_user)(daily_tokens=10**6)
    await _call(user.id, 100, 10)
    reservation = await reserve(user.id)
    flush_budget_keys()
    # the in-flight call settles into the empty Redis, then writes its ledger row
    await budget_settle(reservation=reservation, tokens_used=50, cost_micros=5)
    await usage_record_create(
        user_id=user.id, conversation_id=None, message_id=None, model="claude-test",
        provider="anthropic", input_tokens=40, cache_write_tokens=0, cache_read_tokens=0,
        output_tokens=10, cost_micros=5, time_to_first_token_ms=None, duration_ms=None,
        retries=0, outcome="finished", cache_hit=False, request_id=reservation.request_id,
    )  # fmt: skip
    state = await budget_state(user_id=user.id)
    assert (state.tokens_used, state.cost_used_micros) == (150, 15)


def test_the_ledger_day_follows_the_budget_timezone(make_user, settings):
    settings.BUDGETS_TIMEZONE = "Asia/Tokyo"
    user = make_user()
    boundary = dt.datetime(2025, 1, 31, 15, 0, tzinfo=dt.UTC)  # midnight in Tokyo
    for i, at in enumerate((boundary - dt.timedelta(seconds=1), boundary)):
        UsageRecord.objects.create(
            user=user, model="m", provider="p", input_tokens=10 * (i + 1), outcome="finished",
            request_id=f"tz{i}", created_at=at,
        )  # fmt: skip
    assert ledger_day_totals(user_id=user.id, day=dt.date(2025, 1, 31)) == (10, 0)
    assert ledger_day_totals(user_id=user.id, day=dt.date(2025, 2, 1)) == (20, 0)
