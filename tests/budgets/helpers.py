"""Small helpers for budget tests."""

from __future__ import annotations

import itertools

from budgets.services import budget_reserve

_ids = itertools.count()


async def reserve(user_id: int | None = None, **overrides):
    """budget_reserve with test defaults: 100 prompt + 100 reply tokens, priced at zero."""
    args = {
        "user_id": user_id,
        "model": "claude-test",
        "provider": "anthropic",
        "prompt_tokens": 100,
        "max_tokens": 100,
        "input_price_micros_per_mtok": 0,
        "output_price_micros_per_mtok": 0,
        "request_id": f"r{next(_ids)}",
    }
    args.update(overrides)
    return await budget_reserve(**args)
