"""Redis keys, by scope (see budgets/scopes.py: user:42, member:7:42, team:7, provider:openai).

    budgets:limits-gen                   string  bumped when limits change: cached limits go stale
    budgets:{scope}:limits               hash    the scope's effective limits (cached from the DB)
    budgets:{scope}:streams              zset    request_id -> expiry ms: concurrent streams
    budgets:{scope}:rpm                  zset    request_id -> admitted ms: the sliding minute
    budgets:{day}:{scope}:used           hash    settled tokens/cost, held tokens/cost, overshoot
    budgets:{day}:{scope}:resv           zset    request_id -> expiry ms: live reservations
    budgets:{day}:{scope}:ask            hash    request_id -> "tokens cost granted" it holds
    budgets:{day}:{scope}:done           set     request ids settled or released (idempotence)
    budgets:{day}:{scope}:alerted        set     alert thresholds (percent) already crossed today
    budgets:{day}:{scope}:rebuild-lock   string  SET NX PX while rebuilding from the ledger
Day keys expire two days after their last write.
"""

from __future__ import annotations

from budgets.scopes import Scope

PREFIX = "budgets:"
GEN_KEY = "budgets:limits-gen"
DAY_KEY_TTL_SECONDS = 2 * 86_400
# Per scope, the keys the Lua scripts take, in this order.
SCOPE_KEY_NAMES = ("limits", "streams", "rpm", "used", "resv", "ask", "done", "alerted")


def user_scope(user_id: int) -> str:
    return f"user:{user_id}"


def _name(scope: Scope | str) -> str:
    return scope.key if isinstance(scope, Scope) else scope


def scope_keys(scope: Scope | str, day: str) -> list[str]:
    """The keys of one scope for one day, in SCOPE_KEY_NAMES order."""
    s = _name(scope)
    return [
        f"budgets:{s}:limits",
        f"budgets:{s}:streams",
        f"budgets:{s}:rpm",
        f"budgets:{day}:{s}:used",
        f"budgets:{day}:{s}:resv",
        f"budgets:{day}:{s}:ask",
        f"budgets:{day}:{s}:done",
        f"budgets:{day}:{s}:alerted",
    ]


def limits_key(scope: Scope | str) -> str:
    return f"budgets:{_name(scope)}:limits"


def used_key(scope: Scope | str, day: str) -> str:
    return f"budgets:{day}:{_name(scope)}:used"


def done_key(scope: Scope | str, day: str) -> str:
    return f"budgets:{day}:{_name(scope)}:done"


def rebuild_lock_key(scope: Scope | str, day: str) -> str:
    return f"budgets:{day}:{_name(scope)}:rebuild-lock"
