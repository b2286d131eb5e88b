"""Compare today's Redis counters with the durable ledger, and repair them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.utils import timezone

from budgets import keys
from budgets.days import budget_day, day_key
from budgets.selectors import ledger_day_entries, ledger_day_totals, users_with_usage_on
from budgets.store import sync_store


@dataclass(frozen=True, slots=True)
class Drift:
    """One user's counters that differ from the ledger (missing: no counters at all)."""

    user_id: int
    username: str
    redis_tokens: int
    ledger_tokens: int
    redis_cost_micros: int
    ledger_cost_micros: int
    missing: bool


def _users_in_redis(day: str) -> set[int]:
    found = set()
    for name in sync_store().client.scan_iter(match=f"budgets:{day}:user:*:used", count=500):
        try:
            found.add(int(name.split(":")[3]))
        except (IndexError, ValueError):
            continue
    return found


def budgets_reconcile(*, fix: bool = False, now: dt.datetime | None = None) -> list[Drift]:
    """Today's differences between Redis and the ledger; with fix, Redis takes the ledger's."""
    now = now or timezone.now()
    day, day_str = budget_day(now), day_key(now)
    store = sync_store()
    user_ids = sorted(_users_in_redis(day_str) | set(users_with_usage_on(day=day)))
    names = dict(get_user_model().objects.filter(pk__in=user_ids).values_list("pk", "username"))
    drifts = []
    for user_id in user_ids:
        scope = keys.user_scope(user_id)
        used_key = keys.used_key(scope, day_str)
        used = store.client.hgetall(used_key)
        tokens, cost = ledger_day_totals(user_id=user_id, day=day)
        missing = "seeded" not in used
        r_tokens, r_cost = int(used.get("tokens") or 0), int(used.get("cost") or 0)
        if not missing and (r_tokens, r_cost) == (tokens, cost):
            continue
        if missing and (tokens, cost) == (0, 0):
            continue  # nothing used; counters are created at the next reservation
        drifts.append(
            Drift(
                user_id, names.get(user_id, f"#{user_id}"), r_tokens, tokens, r_cost, cost, missing
            )
        )
        if not fix:
            continue
        if missing:
            args: list[object] = [keys.DAY_KEY_TTL_SECONDS]
            for request_id, t, c in ledger_day_entries(user_id=user_id, day=day):
                args += [request_id, t, c]
            store.run("seed", [used_key, keys.done_key(scope, day_str)], args)
        else:
            store.client.hset(used_key, mapping={"tokens": tokens, "cost": cost})
    return drifts
