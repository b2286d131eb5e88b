"""Make today's counters and the cached limits of each scope ready in Redis for the scripts.

When Redis has lost today's counters (a restart without persistence), they are rebuilt
from the durable ledger, once, under a SET NX PX lock; other callers wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable, Sequence

from asgiref.sync import sync_to_async
from django.conf import settings

from budgets import keys, selectors
from budgets.days import parse_day_key
from budgets.scopes import Scope
from budgets.store import AsyncStore

logger = logging.getLogger(__name__)

ATTEMPTS = 5
REBUILD_LOCK_MS = 10_000
REBUILD_WAIT_SECONDS = 5.0


def limits_mapping(limits: selectors.Limits, gen: str) -> dict[str, str | int]:
    """The cached form of a user's limits that the Lua script reads."""
    models = "|" + "|".join(limits.allowed_models) + "|" if limits.allowed_models else ""
    extra_day = limits.extra_tokens_day.strftime("%Y%m%d") if limits.extra_tokens_day else ""
    return {
        "gen": gen,
        "daily_tokens": limits.daily_tokens,
        "daily_cost": -1 if limits.daily_cost_micros is None else limits.daily_cost_micros,
        "rpm": limits.requests_per_minute,
        "concurrent": limits.concurrent_streams,
        "max_output": limits.max_output_tokens,
        "models": models,
        "extra_tokens": limits.extra_tokens,
        "extra_day": extra_day,
    }


async def load_limits(store: AsyncStore, *, scope: Scope) -> None:
    gen = await store.client.get(keys.GEN_KEY) or "0"  # read before the DB: a newer gen wins
    if scope.kind == "user":
        limits = await sync_to_async(selectors.limits_for_user)(user_id=scope.user_id)
        mapping = limits_mapping(limits, gen)
    else:
        mapping = {**await sync_to_async(selectors.scope_limits)(scope), "gen": gen}
    key = keys.limits_key(scope)
    async with store.client.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, settings.BUDGETS_LIMITS_CACHE_SECONDS)
        await pipe.execute()


async def rebuild(store: AsyncStore, *, scope: Scope, day: str) -> None:
    """Seed today's counters of a scope from the ledger, once, under a SET NX PX lock."""
    lock, token = keys.rebuild_lock_key(scope, day), uuid.uuid4().hex
    used = keys.used_key(scope, day)
    if await store.client.set(lock, token, nx=True, px=REBUILD_LOCK_MS):
        try:
            entries = await sync_to_async(selectors.ledger_day_entries)(
                scope=scope, day=parse_day_key(day)
            )
            args: list[object] = [keys.DAY_KEY_TTL_SECONDS]
            for request_id, tokens, cost in entries:
                args += [request_id, tokens, cost]
            if await store.run("seed", [used, keys.done_key(scope, day)], args):
                logger.info(
                    "budgets: rebuilt %s for %s from %d ledger rows", scope, day, len(entries)
                )
        finally:
            await store.run("unlock", [lock], [token])
        return
    deadline = time.monotonic() + REBUILD_WAIT_SECONDS
    while time.monotonic() < deadline and not await store.client.hexists(used, "seeded"):
        await asyncio.sleep(0.02)


async def prepare(
    store: AsyncStore, *, scopes: Sequence[Scope], day: str, needs: Iterable[str]
) -> None:
    """Load what the reserve script asked for: 'limits:<i>' or 'used:<i>' of scopes[i]."""
    for need in needs:
        what, _, index = need.partition(":")
        scope = scopes[int(index)]
        if what == "limits":
            await load_limits(store, scope=scope)
        elif what == "used":
            await rebuild(store, scope=scope, day=day)
