"""The durable usage ledger: one row per provider call or cache hit."""

from __future__ import annotations

import uuid

from django.db import IntegrityError

from budgets.models import UsageRecord

OUTCOMES = frozenset(UsageRecord.Outcome.values)
_COUNTS = (
    "input_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "output_tokens",
    "cost_micros",
)


async def usage_record_create(
    *,
    user_id: int,
    conversation_id: uuid.UUID | None,
    message_id: int | None,
    model: str,
    provider: str,
    input_tokens: int,
    cache_write_tokens: int,
    cache_read_tokens: int,
    output_tokens: int,
    cost_micros: int,
    time_to_first_token_ms: int | None,
    duration_ms: int | None,
    retries: int,
    outcome: str,
    cache_hit: bool,
    request_id: str,
    batch: bool = False,
    team_id: int | None = None,
) -> None:
    """Write the ledger row for one call; a retried write with the same request_id is a no-op.

    `team_id` is the team the call was billed to (None: the person's own budget only).
    """
    values = {
        "input_tokens": input_tokens,
        "cache_write_tokens": cache_write_tokens,
        "cache_read_tokens": cache_read_tokens,
        "output_tokens": output_tokens,
        "cost_micros": cost_micros,
    }
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise ValueError(f"user_id must be a positive whole number, not {user_id!r}.")
    for name in _COUNTS:
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, not {value!r}.")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}.")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
        raise ValueError("request_id must be non-empty text of at most 128 characters.")
    if team_id is not None and (
        not isinstance(team_id, int) or isinstance(team_id, bool) or team_id <= 0
    ):
        raise ValueError(f"team_id must be a positive whole number or None, not {team_id!r}.")
    if not model or not provider:
        raise ValueError("model and provider are required.")
    defaults = {
        "user_id": user_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "model": model,
        "provider": provider,
        "time_to_first_token_ms": time_to_first_token_ms,
        "duration_ms": duration_ms,
        "retries": max(0, int(retries)),
        "outcome": outcome,
        "cache_hit": bool(cache_hit),
        "batch": bool(batch),
        "team_id": team_id,
        **values,
    }
    try:
        await UsageRecord.objects.aget_or_create(request_id=request_id, defaults=defaults)
    except IntegrityError:
        if team_id is None:
            raise
        # The team was deleted while the call ran: the row is kept, billed to no team (as
        # deleting a team leaves its older rows), rather than lost.
        defaults["team_id"] = None
        await UsageRecord.objects.aget_or_create(request_id=request_id, defaults=defaults)
