"""Parse the JSON websocket API's client frames: size, fields and types checked first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Final

import orjson
from django.conf import settings

from chat import errors
from chat.frames import max_frame_bytes
from chat.services.billing import UNSET

SEND_FIELDS: Final = frozenset(
    {"type", "conversation_id", "message", "model", "max_tokens", "system", "temperature", "team"}
)


@dataclass(frozen=True, slots=True)
class SendFrame:
    message: str
    conversation_id: str | None = None
    model: str | None = None
    max_tokens: int | None = None
    system: str | None = None
    temperature: float | None = None
    # The team to bill (id, exact name, or None: personal); UNSET: a new conversation bills
    # the first team, an existing one keeps its choice. Checked by chat.services.billing.
    team: object = UNSET


@dataclass(frozen=True, slots=True)
class StopFrame:
    """Stop this socket's answer, or (with an id) the one running in that conversation."""

    conversation_id: str | None = None


def invalid(message: str, code: str = "invalid_request") -> errors.InvalidInput:
    return errors.InvalidInput(message, code=code)


def parse_api_frame(text_data: str | None, bytes_data: bytes | None) -> SendFrame | StopFrame:
    """A client frame, or InvalidInput saying exactly what is wrong with it."""
    raw = text_data if text_data is not None else bytes_data
    if raw is None or len(raw) > max_frame_bytes():
        raise invalid(
            f"Frames can be {max_frame_bytes():,} bytes at most; messages "
            f"{settings.CHAT_MAX_MESSAGE_CHARS:,} characters.",
            code="message_too_long",
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("A frame must be a JSON object; this one is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("A frame must be a JSON object.")
    kind = data.get("type")
    if kind == "stop":
        return StopFrame(conversation_id=_conversation_id(data))
    if kind != "send":
        raise invalid(f'Unknown frame type {str(kind)[:40]!r}: use "send" or "stop".')
    unknown = sorted(set(data) - SEND_FIELDS)
    if unknown:
        raise invalid(f"Unknown field {unknown[0][:40]!r} in a send frame.")
    if not isinstance(data.get("message"), str):
        raise invalid("`message` is required and must be a string.")
    max_tokens = _field(data, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise invalid("`max_tokens` must be at least 1.")
    temperature = _field(data, "temperature", (int, float))
    if temperature is not None and not 0 <= temperature <= 2:
        raise invalid("`temperature` must be between 0 and 2.")
    system = _field(data, "system", str)
    if system is not None and len(system) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise invalid(
            f"`system` is {len(system):,} characters; the limit is "
            f"{settings.CHAT_MAX_MESSAGE_CHARS:,}.",
            code="message_too_long",
        )
    return SendFrame(
        message=data["message"],
        conversation_id=_conversation_id(data),
        model=_field(data, "model", str) or None,
        max_tokens=max_tokens,
        system=None if system is None else system.strip(),
        temperature=None if temperature is None else float(temperature),
        team=data.get("team", UNSET),
    )


def _conversation_id(data: dict[str, Any]) -> str | None:
    value = _field(data, "conversation_id", str)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise errors.NotFound("That conversation does not exist.") from None


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise invalid(f"`{name}` has the wrong type.")
    return value
