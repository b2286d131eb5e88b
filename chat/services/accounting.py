"""The pipeline's side of the budgets: reserve before a call, settle and record after.

budgets/ meters tokens and micro-dollars and knows nothing of providers; here the catalog's
prices turn a request into an amount to hold, and a call's usage into what it cost.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from budgets.services import (
    BudgetRefused,
    Reservation,
    budget_release,
    budget_reserve,
    budget_settle,
    usage_record_create,
)
from chat import errors
from chat.providers.base import Usage
from chat.providers.pricing import cost_micros
from chat.providers.specs import ModelInfo

logger = logging.getLogger(__name__)


def _micros_per_mtok(usd: Decimal) -> int:
    return int((usd * 1_000_000).to_integral_value(rounding="ROUND_CEILING"))


async def reserve(
    *,
    user_id: int,
    team_id: int | None,
    model: ModelInfo,
    prompt_tokens: int,
    max_tokens: int,
) -> Reservation:
    """Hold the call's worst case (prompt + max_tokens, and their cost), or refuse.

    `team_id` is the conversation's billing team (None: the person's own budget only); it is
    required so that no door can forget it. A refusal's extra names the budget that refused
    (`scope`, e.g. "team:7") so a door can say which one it was.
    """
    prices = model.prices
    assert prices is not None  # resolve() offers only priced models
    # A prompt may be written to the prompt cache, which costs more than plain input.
    input_price = max(prices.input, prices.cache_write_5m, prices.cache_write_1h)
    try:
        return await budget_reserve(
            user_id=user_id,
            model=model.id,
            provider=model.provider,
            prompt_tokens=max(1, prompt_tokens),
            max_tokens=max_tokens,
            input_price_micros_per_mtok=_micros_per_mtok(input_price),
            output_price_micros_per_mtok=_micros_per_mtok(prices.output),
            request_id=uuid.uuid4().hex,
            team_id=team_id,
        )
    except BudgetRefused as exc:
        raise refused(exc) from exc


def refused(exc: BudgetRefused) -> errors.Refused:
    """The pipeline's refusal for a budgets one, keeping its reset time and scope."""
    return errors.Refused(
        exc.message,
        code=exc.code,
        limit=exc.limit,
        resets_at=exc.resets_at,
        retry_after=exc.retry_after,
        scope=exc.scope,
    )


def call_cost(model: ModelInfo, usage: Usage) -> int:
    """What a call cost in micro-dollars at the catalog's (or admin's) prices."""
    return cost_micros(model, usage, cache_ttl=settings.LLM_CACHE_TTL)


def cache_savings(model: ModelInfo, usage: Usage) -> int:
    """What prompt-cache reads saved against paying full input price for them."""
    if not usage.cache_read_tokens or model.prices is None:
        return 0
    full = Usage(input_tokens=usage.cache_read_tokens)
    read = Usage(cache_read_tokens=usage.cache_read_tokens)
    return max(0, call_cost(model, full) - call_cost(model, read))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended, for the ledger."""

    usage: Usage
    cost_micros: int
    outcome: str  # finished, stopped, failed, interrupted, cache_hit
    time_to_first_token_ms: int | None
    duration_ms: int | None
    retries: int = 0
    cache_hit: bool = False


async def settle_and_record(
    *,
    reservation: Reservation,
    conversation_id: uuid.UUID,
    message_id: int,
    outcome: Outcome,
) -> None:
    """Replace the reservation by what was used, and write the ledger row.

    Never raises: a turn that reached the person is not undone by bookkeeping. A settle
    that fails leaves the reservation to expire by itself; the ledger stays the truth.
    """
    used = outcome.usage.total_tokens
    try:
        if used or outcome.cost_micros:
            await budget_settle(
                reservation=reservation, tokens_used=used, cost_micros=outcome.cost_micros
            )
        else:
            await budget_release(reservation=reservation)
    except Exception:
        logger.exception("settling reservation %s failed", reservation.request_id)
    try:
        await usage_record_create(
            user_id=reservation.user_id,
            conversation_id=conversation_id,
            message_id=message_id,
            model=reservation.model,
            provider=reservation.provider,
            input_tokens=outcome.usage.input_tokens,
            cache_write_tokens=outcome.usage.cache_write_tokens,
            cache_read_tokens=outcome.usage.cache_read_tokens,
            output_tokens=outcome.usage.output_tokens,
            cost_micros=outcome.cost_micros,
            time_to_first_token_ms=outcome.time_to_first_token_ms,
            duration_ms=outcome.duration_ms,
            retries=outcome.retries,
            outcome=outcome.outcome,
            cache_hit=outcome.cache_hit,
            request_id=reservation.request_id,
            team_id=reservation.team_id,
        )
    except Exception:
        logger.exception("writing the usage record of %s failed", reservation.request_id)


async def release(reservation: Reservation) -> None:
    """Give back a reservation nothing was used of (a refusal after reserving)."""
    try:
        await budget_release(reservation=reservation)
    except Exception:
        logger.exception("releasing reservation %s failed", reservation.request_id)
