"""Today's use against the limits, for the meter."""

from __future__ import annotations

import datetime as dt
import logging

from asgiref.sync import async_to_sync
from django.conf import settings
from django.utils import timezone

from budgets import keys
from budgets.days import day_key, resets_at
from budgets.scopes import Scope, user_scope
from budgets.services.counters import ATTEMPTS, prepare
from budgets.services.types import BudgetState, ScopeUsage
from budgets.store import STORE_ERRORS, AsyncStore, async_store

logger = logging.getLogger(__name__)


def _check_user_id(user_id: object) -> None:
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise ValueError(f"user_id must be a positive whole number, not {user_id!r}.")


def unavailable_state(user_id: int, now: dt.datetime | None = None) -> BudgetState:
    now = now or timezone.now()
    return BudgetState(
        user_id=user_id,
        day=day_key(now),
        tokens_used=0,
        tokens_limit=0,
        cost_used_micros=0,
        cost_limit_micros=None,
        resets_at=resets_at(now),
        available=False,
    )


def _int(mapping: dict[str, str], name: str) -> int:
    return int(mapping.get(name) or 0)


async def _read_prepared(
    store: AsyncStore, *, scope: Scope, day: str
) -> tuple[dict[str, str], dict[str, str]] | None:
    """A scope's cached limits and the day's counters, loading them first when missing or
    stale (one pipelined read when they are there); None if they could not be prepared."""
    for _ in range(ATTEMPTS):
        async with store.client.pipeline(transaction=False) as pipe:
            pipe.get(keys.GEN_KEY)
            pipe.hgetall(keys.limits_key(scope))
            pipe.hgetall(keys.used_key(scope, day))
            gen, limits, used = await pipe.execute()
        needs = []
        if limits.get("gen") != (gen or "0"):
            needs.append("limits:0")
        if "seeded" not in used:
            needs.append("used:0")
        if not needs:
            return limits, used
        await prepare(store, scopes=[scope], day=day, needs=needs)
    return None


async def state_read(store: AsyncStore, *, user_id: int) -> BudgetState:
    now = timezone.now()
    day = day_key(now)
    scope = user_scope(user_id)
    read = await _read_prepared(store, scope=scope, day=day)
    if read is None:
        return unavailable_state(user_id, now)
    limits, used = read
    tokens_limit = _int(limits, "daily_tokens")
    if limits.get("extra_day") == day:
        tokens_limit += _int(limits, "extra_tokens")
    cost_limit = _int(limits, "daily_cost")
    return BudgetState(
        user_id=user_id,
        day=day,
        tokens_used=_int(used, "tokens"),
        tokens_limit=tokens_limit,
        cost_used_micros=_int(used, "cost"),
        cost_limit_micros=None if cost_limit < 0 else cost_limit,
        resets_at=resets_at(now),
        reserved_tokens=_int(used, "held_tokens"),
        overshoot_tokens=_int(used, "over_tokens"),
        overshoot_cost_micros=_int(used, "over_cost"),
    )


async def budget_state(*, user_id: int) -> BudgetState:
    """Today's use against the limits, for the meter (available=False if Redis is down)."""
    _check_user_id(user_id)
    try:
        return await state_read(async_store(), user_id=user_id)
    except STORE_ERRORS as exc:
        logger.warning("budgets: state of user %s unavailable: %s", user_id, exc)
        return unavailable_state(user_id)


def budget_state_sync(*, user_id: int) -> BudgetState:
    """budget_state for sync code (pages, admin), with a client of its own."""
    _check_user_id(user_id)

    async def read() -> BudgetState:
        store = AsyncStore(settings.REDIS_URL)
        try:
            return await state_read(store, user_id=user_id)
        except STORE_ERRORS as exc:
            logger.warning("budgets: state of user %s unavailable: %s", user_id, exc)
            return unavailable_state(user_id)
        finally:
            await store.aclose()

    return async_to_sync(read)()


def _limit(mapping: dict[str, str], name: str) -> int | None:
    value = int(mapping.get(name) or -1)
    return None if value < 0 else value


async def scope_usage_read(store: AsyncStore, *, scope: Scope) -> ScopeUsage:
    """Today's use of one scope, loading its limits and counters first if they are missing."""
    now = timezone.now()
    day = day_key(now)
    read = await _read_prepared(store, scope=scope, day=day)
    if read is None:
        raise ConnectionError(f"the counters of {scope} could not be prepared")
    limits, used = read
    tokens_limit = _limit(limits, "daily_tokens")
    if tokens_limit is not None and limits.get("extra_day") == day:
        tokens_limit += _int(limits, "extra_tokens")
    return ScopeUsage(
        scope=scope.key,
        label=limits.get("label", ""),
        day=day,
        tokens_used=_int(used, "tokens"),
        tokens_limit=tokens_limit,
        cost_used_micros=_int(used, "cost"),
        cost_limit_micros=_limit(limits, "daily_cost"),
        reserved_tokens=_int(used, "held_tokens"),
        resets_at=resets_at(now),
    )


def _scope_unavailable(scope: Scope) -> ScopeUsage:
    now = timezone.now()
    return ScopeUsage(
        scope=scope.key,
        label="",
        day=day_key(now),
        tokens_used=0,
        tokens_limit=None,
        cost_used_micros=0,
        cost_limit_micros=None,
        reserved_tokens=0,
        resets_at=resets_at(now),
        available=False,
    )


async def scope_usage(*, scope: Scope) -> ScopeUsage:
    """Today's use of a team, member cap or provider scope (available=False if Redis is down)."""
    try:
        return await scope_usage_read(async_store(), scope=scope)
    except (*STORE_ERRORS, ConnectionError) as exc:
        logger.warning("budgets: usage of %s unavailable: %s", scope, exc)
        return _scope_unavailable(scope)


def scope_usage_sync(*, scope: Scope) -> ScopeUsage:
    """scope_usage for sync code (pages, admin, tasks), with a client of its own."""

    async def read() -> ScopeUsage:
        store = AsyncStore(settings.REDIS_URL)
        try:
            return await scope_usage_read(store, scope=scope)
        except (*STORE_ERRORS, ConnectionError) as exc:
            logger.warning("budgets: usage of %s unavailable: %s", scope, exc)
            return _scope_unavailable(scope)
        finally:
            await store.aclose()

    return async_to_sync(read)()
