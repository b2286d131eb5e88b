"""Effective prices (catalog defaults with admin overrides) and the exact cost of a call.

Overrides live in ModelPrice rows. The hot path never queries them: an in-process snapshot is
read instead, reloaded at most every LLM_PRICE_REFRESH_SECONDS (and at once in the process that
saves a price in admin). From async code a stale snapshot is reloaded by `prices_refresh()`
(one query, awaited once per turn at most) or, through `priced()`, in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError

from chat.providers.base import Usage
from chat.providers.specs import ModelInfo, Prices

logger = logging.getLogger(__name__)
CacheTtl = Literal["5m", "1h"]
_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")

_overrides: dict[str, dict[str, Decimal]] = {}
_loaded_at: float | None = None
_refreshing: asyncio.Task[None] | None = None


def _stale() -> bool:
    return _loaded_at is None or time.monotonic() - _loaded_at >= settings.LLM_PRICE_REFRESH_SECONDS


def _load() -> None:
    """Read every ModelPrice row into the snapshot (one query)."""
    global _overrides, _loaded_at
    from chat.models import ModelPrice

    try:
        rows = ModelPrice.objects.values("model_id", *_FIELDS)
        _overrides = {
            row["model_id"]: {f: row[f] for f in _FIELDS if row[f] is not None} for row in rows
        }
    except DatabaseError:
        # Keep the previous snapshot (or the catalog's prices) until the next refresh.
        logger.exception("could not read model prices")
    _loaded_at = time.monotonic()


def prices_invalidate() -> None:
    """Forget the snapshot; the next read reloads it (called when admin saves a price)."""
    global _loaded_at
    _loaded_at = None


async def prices_refresh() -> None:
    """Reload the snapshot if it is stale; free when it is fresh."""
    if _stale():
        await sync_to_async(_load)()


def _refresh_in_background() -> None:
    global _refreshing
    loop = asyncio.get_running_loop()
    if _refreshing is not None and not _refreshing.done() and _refreshing.get_loop() is loop:
        return

    async def refresh() -> None:
        try:
            await prices_refresh()
        except Exception:  # the previous snapshot stays in use
            logger.exception("could not reload model prices")

    _refreshing = loop.create_task(refresh())


def priced(model: ModelInfo) -> ModelInfo:
    """The model with its effective prices: the catalog's, overridden by admin's."""
    if _stale():
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            _load()  # a synchronous caller: admin, a management command, a worker thread
        else:
            _refresh_in_background()
    override = _overrides.get(model.id)
    if not override:
        return model
    base = model.prices
    values = {f: override.get(f, getattr(base, f) if base else None) for f in _FIELDS}
    if any(v is None for v in values.values()):
        # A model without published prices needs every price entered before it is offered.
        return model
    return replace(model, prices=Prices(**values))


def cost_micros(model: ModelInfo, usage: Usage, *, cache_ttl: CacheTtl = "5m") -> int:
    """The cost of one call in micro-dollars, exact: Decimal sums, rounded half up once.

    A price per million tokens times a token count is micro-dollars, so no scaling is needed.
    usage.input_tokens excludes cache tokens (the adapters normalise both providers).
    """
    prices = model.prices
    if prices is None:
        raise ValueError(f"{model.id} has no prices")
    write = prices.cache_write_1h if cache_ttl == "1h" else prices.cache_write_5m
    total = (
        usage.input_tokens * prices.input
        + usage.cache_write_tokens * write
        + usage.cache_read_tokens * prices.cache_read
        + usage.output_tokens * prices.output
    )
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))
