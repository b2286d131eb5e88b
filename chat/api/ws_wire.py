"""Turn events as the JSON websocket API's server frames (docs/api.md lists them all)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from budgets.services import BudgetState
from chat import errors
from chat.providers.base import Usage
from chat.services.events import Failed, Finished, Notice, Retrying, Started


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame, default=str).decode()


def usd(micros: int) -> float:
    return micros / 1_000_000


def usage(value: Usage | None) -> dict[str, int]:
    value = value or Usage()
    return {
        "input_tokens": value.input_tokens,
        "cache_write_tokens": value.cache_write_tokens,
        "cache_read_tokens": value.cache_read_tokens,
        "output_tokens": value.output_tokens,
        "total_tokens": value.total_tokens,
    }


def budget(state: BudgetState) -> dict[str, Any]:
    return {
        "tokens_used": state.tokens_used,
        "tokens_limit": state.tokens_limit,
        "cost_used_usd": usd(state.cost_used_micros),
        "cost_limit_usd": None if state.cost_limit_micros is None else usd(state.cost_limit_micros),
        "resets_at": state.resets_at_iso,
    }


def started(event: Started) -> dict[str, Any]:
    return {
        "type": "started",
        "conversation_id": str(event.conversation_id),
        "message_id": event.assistant_message_id,
        "user_message_id": event.user_message_id,
        "model": event.model,
    }


def retrying(event: Retrying) -> dict[str, Any]:
    return {
        "type": "retrying",
        "attempt": event.attempt,
        "max_attempts": event.max_attempts,
        "delay": event.delay,
        "reason": event.reason,
        "message": event.message,
    }


def notice(event: Notice) -> dict[str, Any]:
    return {"type": "notice", "text": event.text, "level": event.level}


def finished(event: Finished, state: BudgetState) -> dict[str, Any]:
    return {
        "type": "finished",
        "message_id": event.message_id,
        "stop_reason": event.stop_reason,
        "usage": usage(event.usage),
        "cost_usd": usd(event.cost_micros),
        "cache_hit": event.cache_hit,
        "budget": budget(state),
    }


def failed(event: Failed, state: BudgetState) -> dict[str, Any]:
    return {
        "type": "error",
        "code": event.code,
        "message": event.message,
        "message_id": event.message_id,
        "usage": usage(event.usage),
        "cost_usd": usd(event.cost_micros),
        "budget": budget(state),
    }


def error(exc: errors.ChatError) -> dict[str, Any]:
    """A refusal or a bad frame: nothing was stored or charged."""
    frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
    for name in ("retry_after", "resets_at"):
        value = exc.extra.get(name)
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC).isoformat()
        if value is not None:
            frame[name] = value
    return frame
