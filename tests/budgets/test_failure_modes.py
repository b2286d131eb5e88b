"""Redis unreachable: fail closed by default, open when BUDGETS_FAIL_OPEN is set."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from budgets.errors import BudgetRefused, BudgetUnavailable
from budgets.models import UsageRecord
from budgets.services import budget_release, budget_settle, budget_state, usage_record_create
from tests.budgets.helpers import reserve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_stores")]


@pytest.fixture
def dead_redis(settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nobody-listens.sock"


async def test_redis_unreachable_fails_closed_with_a_clear_message(make_user, dead_redis):
    user = await sync_to_async(make_user)()
    with pytest.raises(BudgetUnavailable) as refused:
        await reserve(user.id)
    assert isinstance(refused.value, BudgetRefused)
    assert refused.value.code == "budget_unavailable"
    assert "nothing was sent" in refused.value.message


async def test_fail_open_lets_the_call_through_unmetered_and_still_writes_the_ledger(
    make_user, dead_redis, settings
):
    settings.BUDGETS_FAIL_OPEN = True
    user = await sync_to_async(make_user)(max_output_tokens=300)
    reservation = await reserve(user.id, max_tokens=1000)
    assert reservation.unmetered is True
    assert reservation.max_tokens == 300  # the plan's cap still applies
    state = await budget_settle(reservation=reservation, tokens_used=120, cost_micros=3)
    assert state.available is False
    await budget_release(reservation=reservation)
    await usage_record_create(
        user_id=user.id, conversation_id=None, message_id=None, model="claude-test",
        provider="anthropic", input_tokens=100, cache_write_tokens=0, cache_read_tokens=0,
        output_tokens=20, cost_micros=3, time_to_first_token_ms=None, duration_ms=None,
        retries=0, outcome="finished", cache_hit=False, request_id=reservation.request_id,
    )  # fmt: skip
    assert await UsageRecord.objects.filter(request_id=reservation.request_id).aexists()


async def test_fail_open_still_refuses_a_model_outside_the_plan(make_user, dead_redis, settings):
    settings.BUDGETS_FAIL_OPEN = True
    user = await sync_to_async(make_user)(allowed_models="claude-test")
    with pytest.raises(BudgetRefused) as refused:
        await reserve(user.id, model="gpt-other")
    assert refused.value.code == "model_not_allowed"


async def test_state_is_marked_unavailable_rather_than_raising(make_user, dead_redis):
    user = await sync_to_async(make_user)()
    state = await budget_state(user_id=user.id)
    assert state.available is False
    assert not state.warn
    assert not state.exhausted


async def test_fail_open_still_refuses_billing_a_team_you_are_not_in_or_its_excluded_models(
    make_user, dead_redis, settings
):
    from budgets.models import Team, TeamMembership

    settings.BUDGETS_FAIL_OPEN = True
    member, outsider = [await sync_to_async(make_user)() for _ in range(2)]
    team = await Team.objects.acreate(name="Legal", allowed_models="claude-test")
    await TeamMembership.objects.acreate(team=team, user=member)
    with pytest.raises(BudgetRefused) as refused:
        await reserve(outsider.id, team_id=team.id)
    assert refused.value.code == "not_a_member"
    assert "team Legal" in refused.value.message
    with pytest.raises(BudgetRefused) as refused:
        await reserve(member.id, team_id=team.id, model="gpt-other")
    assert refused.value.code == "model_not_allowed"
    reservation = await reserve(member.id, team_id=team.id)
    assert reservation.unmetered is True
    assert reservation.team_id == team.id


@pytest.mark.parametrize(("wait", "unavailable"), [(0.000001, True), (10.0, False)])
async def test_a_burst_beyond_the_pool_queues_for_BUDGETS_REDIS_POOL_WAIT(
    make_user, settings, wait, unavailable
):
    """Callers beyond the pool's connections wait for one; only past the wait are they told
    the store is unavailable (a queue is load, not Redis being down)."""
    settings.BUDGETS_REDIS_MAX_CONNECTIONS = 1
    settings.BUDGETS_REDIS_POOL_WAIT = wait
    user = await sync_to_async(make_user)()
    await reserve(user.id)  # limits and counters loaded: the burst is one round trip each
    results = await asyncio.gather(*(reserve(user.id) for _ in range(40)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, BudgetUnavailable) for r in failed)
    assert bool(failed) is unavailable
