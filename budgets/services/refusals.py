"""Refusals from the reserve script, turned into messages fit for a person.

A refusal names the budget that refused (the person's own, their cap within a team, the
team's, or the organisation's cap for a provider) and when it resets.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from budgets.days import resets_at
from budgets.errors import BudgetRefused
from budgets.scopes import Scope


def _usd(micros: int) -> str:
    return f"${micros / 1_000_000:,.2f}"


def _budget_message(
    scope: Scope, *, label: str, limit: str, value: int, fit: int, prompt: int, when: str
) -> str:
    """What ran out, for a budget_exceeded refusal of `scope`."""
    amount = f"{value:,} tokens" if limit == "daily_tokens" else _usd(value)
    if scope.kind == "member":
        return (
            f"You've used your daily cap within team {label} ({amount}); it resets at {when}. "
            "Bill this conversation to another team or to your own budget to go on."
        )
    if scope.kind == "team":
        return (
            f"Team {label}'s daily budget ({amount}) is used up or too low for this request; "
            f"it resets at {when}. Bill this conversation to another team or to your own "
            "budget to go on."
        )
    if scope.kind == "provider":
        return (
            f"The organisation's daily spending cap for {label} ({amount}) is reached, so calls "
            f"to {label} are paused for everyone until {when}. Choose a model from another "
            "provider, or try again after the reset."
        )
    if limit == "daily_tokens":
        left = fit + prompt
        if left > 0:
            return (
                f"Only {left:,} tokens are left in today's budget, not enough for this request "
                f"and a useful reply. Shorten the conversation, or wait until {when} when the "
                "budget resets."
            )
        return f"Your daily token budget is used up; it resets at {when}."
    return (
        f"Your daily spending budget ({amount}) is used up or too low for this request; "
        f"it resets at {when}."
    )


def refusal_from_script(
    result: list[str], *, scopes: Sequence[Scope], now: dt.datetime, model: str, prompt: int
) -> BudgetRefused:
    _, code, limit, scope_index, retry_ms, value, fit, label = result[:8]
    scope = scopes[int(scope_index)]
    extra = {"scope_index": int(scope_index), "scope": scope.key}
    if code == "not_a_member":
        return BudgetRefused(
            f"You're not a member of team {label}, so this conversation can't be billed to it. "
            "Choose one of your teams, or your own budget.",
            code="not_a_member",
            limit="team",
            **extra,
        )
    if code == "model_not_allowed":
        if scope.kind == "team":
            message = (
                f"Team {label} doesn't allow the model {model}. Choose another model, or bill "
                "another team."
            )
        else:
            message = f"Your plan doesn't include the model {model}. Choose another model."
        return BudgetRefused(message, code="model_not_allowed", limit="allowed_models", **extra)
    if code == "rate_limited":
        retry = int(retry_ms) / 1000
        return BudgetRefused(
            f"You're sending requests faster than your plan allows ({int(value):,} a minute). "
            f"Try again in {max(1, math.ceil(retry))} s.",
            code="rate_limited",
            limit="rpm",
            retry_after=retry,
            resets_at=now + dt.timedelta(seconds=retry),
            **extra,
        )
    if code == "too_many_streams":
        n = int(value)
        answers = "answer is" if n == 1 else "answers are"
        return BudgetRefused(
            f"{n} {answers} already streaming, the most your plan allows at once. "
            "Wait for one to finish, or stop it, and try again.",
            code="too_many_streams",
            limit="concurrent",
            **extra,
        )
    at = resets_at(now)
    message = _budget_message(
        scope,
        label=label,
        limit=limit,
        value=int(value),
        fit=int(fit),
        prompt=prompt,
        when=f"{at:%H:%M} UTC",
    )
    return BudgetRefused(
        message,
        code="budget_exceeded",
        limit=limit,  # type: ignore[arg-type]
        resets_at=at,
        retry_after=(at - now).total_seconds(),
        **extra,
    )
