"""Refusals from the reserve script, turned into messages fit for a person."""

from __future__ import annotations

import datetime as dt
import math

from budgets.days import resets_at
from budgets.errors import BudgetRefused


def refusal_from_script(
    result: list[str], *, now: dt.datetime, model: str, prompt: int
) -> BudgetRefused:
    _, code, limit, scope_index, retry_ms, value, fit = result
    scope_extra = {"scope_index": int(scope_index)}
    if code == "model_not_allowed":
        return BudgetRefused(
            f"Your plan doesn't include the model {model}. Choose another model.",
            code="model_not_allowed",
            limit="allowed_models",
            **scope_extra,
        )
    if code == "rate_limited":
        retry = int(retry_ms) / 1000
        return BudgetRefused(
            f"You're sending requests faster than your plan allows ({int(value):,} a minute). "
            f"Try again in {max(1, math.ceil(retry))} s.",
            code="rate_limited",
            limit="rpm",
            retry_after=retry,
            resets_at=now + dt.timedelta(seconds=retry),
            **scope_extra,
        )
    if code == "too_many_streams":
        n = int(value)
        answers = "answer is" if n == 1 else "answers are"
        return BudgetRefused(
            f"{n} {answers} already streaming, the most your plan allows at once. "
            "Wait for one to finish, or stop it, and try again.",
            code="too_many_streams",
            limit="concurrent",
            **scope_extra,
        )
    at = resets_at(now)
    when = f"{at:%H:%M} UTC"
    if limit == "daily_tokens":
        left = int(fit) + prompt
        if left > 0:
            message = (
                f"Only {left:,} tokens are left in today's budget, not enough for this request "
                f"and a useful reply. Shorten the conversation, or wait until {when} when the "
                "budget resets."
            )
        else:
            message = f"Your daily token budget is used up; it resets at {when}."
    else:
        message = (
            f"Your daily spending budget (${int(value) / 1_000_000:,.2f}) is used up or too low "
            f"for this request; it resets at {when}."
        )
    return BudgetRefused(
        message,
        code="budget_exceeded",
        limit=limit,
        resets_at=at,  # type: ignore[arg-type]
        retry_after=(at - now).total_seconds(),
        **scope_extra,
    )
