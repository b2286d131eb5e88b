"""Compare today's Redis counters of every budget scope with the durable ledger, and repair them.

Scopes: each person's own budget, each team's, each member's cap within a team and each
provider's (see budgets/scopes.py). A person's counters missing from Redis are reported, as
they always were; a team's, member's or provider's missing counters are not drift, since the
next reservation that needs them rebuilds them from the ledger. Counters that exist but
differ from the ledger are drift for every scope.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from budgets import keys
from budgets.days import budget_day, day_key
from budgets.scopes import Scope, parse_scope
from budgets.selectors import (
    ledger_day_entries,
    scope_day_totals,
    scope_labels,
    scopes_with_usage_on,
)
from budgets.store import sync_store


@dataclass(frozen=True, slots=True)
class Drift:
    """One scope's counters that differ from the ledger (missing: no counters at all)."""

    scope: str  # "user:42", "team:7", "member:7:42", "provider:openai"
    label: str  # "ada", "Research", "ada in Research", "OpenAI"
    redis_tokens: int
    ledger_tokens: int
    redis_cost_micros: int
    ledger_cost_micros: int
    missing: bool

    @property
    def is_user(self) -> bool:
        return self.scope.startswith("user:")


def _scopes_in_redis(day: str) -> set[Scope]:
    prefix, suffix = f"budgets:{day}:", ":used"
    found = set()
    for name in sync_store().client.scan_iter(match=f"{prefix}*{suffix}", count=500):
        try:
            found.add(parse_scope(name[len(prefix) : -len(suffix)]))
        except ValueError:
            continue
    return found


def budgets_reconcile(*, fix: bool = False, now: dt.datetime | None = None) -> list[Drift]:
    """Today's differences between Redis and the ledger; with fix, Redis takes the ledger's."""
    now = now or timezone.now()
    day, day_str = budget_day(now), day_key(now)
    store = sync_store()
    scopes = sorted(
        _scopes_in_redis(day_str) | set(scopes_with_usage_on(day=day)), key=lambda s: s.key
    )
    labels = scope_labels(scopes)
    drifts = []
    for scope in scopes:
        used_key = keys.used_key(scope, day_str)
        used = store.client.hgetall(used_key)
        tokens, cost = scope_day_totals(scope=scope, day=day)
        missing = "seeded" not in used
        r_tokens, r_cost = int(used.get("tokens") or 0), int(used.get("cost") or 0)
        if not missing and (r_tokens, r_cost) == (tokens, cost):
            continue
        if missing and ((tokens, cost) == (0, 0) or scope.kind != "user"):
            continue  # created (or rebuilt from the ledger) at the next reservation
        drifts.append(Drift(scope.key, labels[scope.key], r_tokens, tokens, r_cost, cost, missing))
        if not fix:
            continue
        if missing:
            args: list[object] = [keys.DAY_KEY_TTL_SECONDS]
            for request_id, t, c in ledger_day_entries(scope=scope, day=day):
                args += [request_id, t, c]
            store.run("seed", [used_key, keys.done_key(scope, day_str)], args)
        else:
            store.client.hset(used_key, mapping={"tokens": tokens, "cost": cost})
    return drifts
