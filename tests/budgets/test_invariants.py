"""Whatever mix of calls happens, today's spend stays within the limit (plus recorded overshoot)."""

from __future__ import annotations

import asyncio
import random

import pytest
from asgiref.sync import sync_to_async

from budgets.errors import BudgetRefused
from budgets.services import budget_release, budget_settle, budget_state
from tests.budgets.helpers import reserve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_stores")]

LIMIT = 20_000


async def _call(user_id: int, rng: random.Random, log: list[str]) -> None:
    """One call with a random fate: settle within, settle over, release, or die (never settle)."""
    try:
        reservation = await reserve(
            user_id,
            prompt_tokens=rng.randint(50, 400),
            max_tokens=rng.randint(100, 1500),
            ttl_seconds=0.25,
        )
    except BudgetRefused as exc:
        log.append(f"refused:{exc.code}")
        return
    await asyncio.sleep(rng.random() * 0.05)
    fate = rng.choices(["settle", "overshoot", "release", "killed", "late"], [6, 1, 2, 2, 1])[0]
    log.append(fate)
    if fate == "settle":
        used = rng.randint(0, reservation.reserved_tokens)
        await budget_settle(reservation=reservation, tokens_used=used, cost_micros=0)
    elif fate == "overshoot":  # the provider used more than reserved
        used = reservation.reserved_tokens + rng.randint(1, 50)
        await budget_settle(reservation=reservation, tokens_used=used, cost_micros=0)
    elif fate == "release":
        await budget_release(reservation=reservation)
    elif fate == "late":  # settles after its reservation expired: all of it is overshoot
        await asyncio.sleep(0.3)
        await budget_settle(reservation=reservation, tokens_used=rng.randint(1, 200), cost_micros=0)
    # "killed": the process died; the reservation expires by itself


async def test_spend_never_exceeds_the_limit_except_by_recorded_overshoot(make_user, settings):
    settings.BUDGETS_MIN_REPLY_TOKENS = 50
    user = await sync_to_async(make_user)(daily_tokens=LIMIT, concurrent_streams=40)
    rng = random.Random(4)
    log: list[str] = []
    for _wave in range(6):
        await asyncio.gather(*(_call(user.id, rng, log) for _ in range(60)))
        state = await budget_state(user_id=user.id)
        assert state.tokens_used <= LIMIT + state.overshoot_tokens
        assert state.tokens_used + state.reserved_tokens <= LIMIT + state.overshoot_tokens
    await asyncio.sleep(0.3)  # every reservation left by a killed call has expired
    await reserve(user.id, prompt_tokens=1, max_tokens=1, ttl_seconds=0.01)  # prunes them
    await asyncio.sleep(0.02)
    await reserve(user.id, prompt_tokens=1, max_tokens=1)
    state = await budget_state(user_id=user.id)
    assert state.reserved_tokens == 2
    assert state.tokens_used <= LIMIT + state.overshoot_tokens
    assert {"settle", "overshoot", "release", "killed", "late"} <= set(log)
    refusals = {entry for entry in log if entry.startswith("refused:")}
    assert refusals  # the budget was actually under pressure
    assert refusals <= {"refused:budget_exceeded", "refused:too_many_streams"}
    assert state.overshoot_tokens > 0
