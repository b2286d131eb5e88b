"""Budgets for batch items: the batch price, per-item reservations kept in the database, settling.

Anthropic bills Message Batches at half the standard price, for every kind of token, so a
batched Claude item is priced (reserved and charged) with every catalog price multiplied by
BATCH_PRICE_FACTOR, and its ledger row says `batch=True`. OpenAI items run as ordinary paced
calls at the standard price. A reservation is held per item under the request id
`batch-<item id>`, which is also its ledger row's id: reserving again after a crash returns the
live reservation, and settling or writing the row twice does nothing more (budgets' settle is
idempotent per request id and the ledger's request_id is unique), so an item is charged once.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, replace
from decimal import Decimal
from typing import Any

from budgets.services import (
    BudgetRefused,
    Reservation,
    budget_release,
    budget_reserve,
    budget_settle,
    usage_record_create,
)
from chat.models import BatchItem
from chat.providers.base import Usage
from chat.providers.specs import ModelInfo, Prices
from chat.services.accounting import call_cost, refused

logger = logging.getLogger(__name__)

BATCH_PRICE_FACTOR = Decimal("0.5")


def batch_priced(model: ModelInfo) -> ModelInfo:
    """The model at Message Batches prices: every price times BATCH_PRICE_FACTOR."""
    prices = model.prices
    assert prices is not None  # resolve() offers only priced models
    scaled = {name: value * BATCH_PRICE_FACTOR for name, value in asdict(prices).items()}
    return replace(model, prices=Prices(**scaled))


def item_cost(model: ModelInfo, usage: Usage, *, batched: bool) -> int:
    """What an item's usage costs: at the batch price when batched, else the standard one."""
    return call_cost(batch_priced(model) if batched else model, usage)


def request_id_of(item: BatchItem) -> str:
    """The item's reservation and ledger id."""
    return f"batch-{item.id.hex}"


def _micros_per_mtok(usd: Decimal) -> int:
    return int((usd * 1_000_000).to_integral_value(rounding="ROUND_CEILING"))


async def item_reserve(
    *,
    user_id: int,
    model: ModelInfo,
    item: BatchItem,
    prompt_tokens: int,
    max_tokens: int,
    ttl_seconds: int,
    batched: bool,
    team_id: int | None,
) -> Reservation:
    """Hold the item's worst case at the price it will be charged, or raise errors.Refused.

    `team_id` is the job's billing team (None: the person's own budget only).
    """
    prices = (batch_priced(model) if batched else model).prices
    assert prices is not None
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
            request_id=request_id_of(item),
            ttl_seconds=ttl_seconds,
            background=True,
            team_id=team_id,
        )
    except BudgetRefused as exc:
        raise refused(exc) from exc


def reservation_dump(reservation: Reservation) -> dict[str, Any]:
    """The reservation as JSON for BatchItem.reservation."""
    data = asdict(reservation)
    data["scopes"] = list(reservation.scopes)
    data["expires_at"] = reservation.expires_at.isoformat() if reservation.expires_at else None
    return data


def reservation_load(data: dict[str, Any]) -> Reservation:
    """The Reservation stored by reservation_dump."""
    values = dict(data)
    values["scopes"] = tuple(values["scopes"])
    if values.get("expires_at"):
        values["expires_at"] = dt.datetime.fromisoformat(values["expires_at"])
    return Reservation(**values)


async def item_settle(
    *, item: BatchItem, model: ModelInfo, usage: Usage, outcome: str, batched: bool
) -> None:
    """Charge the item's usage against its reservation and write its ledger row, once.

    A failed Redis settle is logged by budgets and repaired from the ledger; a failed ledger
    write raises, so the task runs again and retries it.
    """
    assert item.reservation is not None
    reservation = reservation_load(item.reservation)
    if not usage.total_tokens:
        await budget_release(reservation=reservation)
        return
    await budget_settle(
        reservation=reservation, tokens_used=usage.total_tokens, cost_micros=item.cost_micros
    )
    await usage_record_create(
        user_id=reservation.user_id,
        conversation_id=None,
        message_id=None,
        model=model.id,
        provider=model.provider,
        input_tokens=usage.input_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        output_tokens=usage.output_tokens,
        cost_micros=item.cost_micros,
        time_to_first_token_ms=None,
        duration_ms=None,
        retries=0,
        outcome=outcome,
        cache_hit=False,
        request_id=reservation.request_id,
        batch=batched,
        team_id=reservation.team_id,
    )


async def item_release(*, item: BatchItem) -> None:
    """Give back an item's reservation unused (errored, canceled, expired); idempotent."""
    if item.reservation is not None:
        await budget_release(reservation=reservation_load(item.reservation))
