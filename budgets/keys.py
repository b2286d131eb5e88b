"""Redis keys, by scope, so that later scopes (team, member, provider) slot in.

A scope is a string such as "user:42" (later "team:7", "member:7:42", "provider:anthropic").
    budgets:limits-gen                   string  bumped when a plan changes: cached limits go stale
    budgets:{scope}:limits               hash    the scope's effective limits (cached from the DB)
    budgets:{scope}:streams              zset    request_id -> expiry ms: concurrent streams
    budgets:{scope}:rpm                  zset    request_id -> admitted ms: the sliding minute
    budgets:{day}:{scope}:used           hash    settled tokens/cost, held tokens/cost, overshoot
    budgets:{day}:{scope}:resv           zset    request_id -> expiry ms: live reservations
    budgets:{day}:{scope}:ask            hash    request_id -> "tokens cost granted" it holds
    budgets:{day}:{scope}:done           set     request ids settled or released (idempotence)
    budgets:{day}:{scope}:rebuild-lock   string  SET NX PX while rebuilding from the ledger
Day keys expire two days after their last write.
"""

from __future__ import annotations

PREFIX = "budgets:"
GEN_KEY = "budgets:limits-gen"
DAY_KEY_TTL_SECONDS = 2 * 86_400
# Per scope, the keys the Lua scripts take, in this order.
SCOPE_KEY_NAMES = ("limits", "streams", "rpm", "used", "resv", "ask", "done")


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


def scope_keys(scope: str, day: str) -> list[str]:
    """The keys of one scope for one day, in SCOPE_KEY_NAMES order."""
    return [
        f"budgets:{scope}:limits",
        f"budgets:{scope}:streams",
        f"budgets:{scope}:rpm",
        f"budgets:{day}:{scope}:used",
        f"budgets:{day}:{scope}:resv",
        f"budgets:{day}:{scope}:ask",
        f"budgets:{day}:{scope}:done",
    ]


def limits_key(scope: str) -> str:
    return f"budgets:{scope}:limits"


def used_key(scope: str, day: str) -> str:
    return f"budgets:{day}:{scope}:used"


def done_key(scope: str, day: str) -> str:
    return f"budgets:{day}:{scope}:done"


def rebuild_lock_key(scope: str, day: str) -> str:
    return f"budgets:{day}:{scope}:rebuild-lock"
