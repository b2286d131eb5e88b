"""Errors of the budgets app.

    BudgetError                 root: `message` fit for a person, `extra` for logs
     └── BudgetRefused          refused: `code`, `limit`, `resets_at`, `retry_after`
          └── BudgetUnavailable the budget store (Redis) is unreachable: fail closed

Doors catch BudgetError and show `message`. Programming errors (a missing user, a
non-positive amount) are plain ValueError: they are bugs, not something to tell a user.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

RefusalCode = Literal[
    "budget_exceeded",
    "rate_limited",
    "too_many_streams",
    "budget_unavailable",
    "model_not_allowed",
    "not_a_member",
]
LimitName = Literal[
    "daily_tokens", "daily_cost", "rpm", "concurrent", "allowed_models", "store", "team"
]

# The codes that reach the wire, listed once.
REFUSAL_CODES: frozenset[str] = frozenset(RefusalCode.__args__)  # type: ignore[attr-defined]


class BudgetError(Exception):
    """Root of the budgets errors: `message` is safe to show a person."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class BudgetRefused(BudgetError):
    """A reservation was refused; nothing may be sent to a provider.

    `scope` names the budget that refused (budgets/scopes.py: user:42, member:7:42, team:7,
    provider:anthropic), so doors can say which limit it was.
    """

    def __init__(
        self,
        message: str,
        *,
        code: RefusalCode,
        limit: LimitName,
        resets_at: dt.datetime | None = None,
        retry_after: float | None = None,
        scope: str = "",
        **extra: Any,
    ) -> None:
        super().__init__(message, **extra)
        self.code = code
        self.limit = limit
        self.resets_at = resets_at
        self.retry_after = retry_after
        self.scope = scope


class BudgetUnavailable(BudgetRefused):
    """The budget store is unreachable and BUDGETS_FAIL_OPEN is off."""

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        super().__init__(
            message
            or "Usage budgets can't be checked right now, so nothing was sent. "
            "Please try again in a moment.",
            code="budget_unavailable",
            limit="store",
            **extra,
        )
