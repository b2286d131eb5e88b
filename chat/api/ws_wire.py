"""A generation's frames as the JSON websocket API's server frames (docs/api.md lists them)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from budgets.services import BudgetState
from chat import errors
from chat.services.events import Started

USAGE_FIELDS = ("input_tokens", "cache_write_tokens", "cache_read_tokens", "output_tokens")
# A generation's final frames that carry the budget after the answer.
BUDGETED = frozenset({"finished", "failed", "interrupted"})


def dumps(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame, default=str).decode()


def usd(micros: int) -> float:
    return micros / 1_000_000


def usage(value: dict[str, int] | None) -> dict[str, int]:
    """A generation frame's usage (Usage's fields) with its total."""
    value = value or {}
    counts = {name: value.get(name) or 0 for name in USAGE_FIELDS}
    return {**counts, "total_tokens": sum(counts.values())}


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


def from_generation(frame: dict[str, Any], state: BudgetState | None) -> dict[str, Any] | None:
    """A generation's stream frame as a server frame (None: skip it); BUDGETED ones get `state`."""
    kind = frame["type"]
    if kind == "delta":
        return {"type": "delta", "text": frame["text"]}
    if kind == "notice":
        return {"type": "notice", "text": frame["text"], "level": frame["level"]}
    if kind == "retrying":
        fields = ("attempt", "max_attempts", "delay", "reason", "message")
        return {"type": "retrying", **{name: frame[name] for name in fields}}
    if kind == "stopped":
        return {"type": "stopped", "message_id": frame["message_id"]}
    if kind == "finished":
        return {
            "type": "finished",
            "message_id": frame["message_id"],
            "stop_reason": frame["stop_reason"],
            "usage": usage(frame["usage"]),
            "cost_usd": usd(frame["cost_micros"]),
            "cache_hit": frame["cache_hit"],
            "budget": None if state is None else budget(state),
        }
    if kind in ("failed", "interrupted"):
        return {
            "type": "error",
            "code": frame["code"],
            "message": frame["message"],
            "message_id": frame["message_id"],
            "usage": usage(frame.get("usage")),
            "cost_usd": usd(frame.get("cost_micros") or 0),
            "budget": None if state is None else budget(state),
        }
    return None  # "started": the door sent it from generation_start's answer


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
