"""Parse the frames a door receives: sizes and types checked before anything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
from django.conf import settings

from chat import errors

# Room for the message itself (up to 4 bytes a character in JSON) plus the other fields.
FRAME_OVERHEAD = 8_192


Action = Literal["send", "stop", "regenerate", "continue", "resync"]
# Retry after a failure is answering the last message again.
ACTIONS: dict[str, Action] = {
    "send": "send",
    "stop": "stop",
    "regenerate": "regenerate",
    "retry": "regenerate",
    "continue": "continue",
    "resync": "resync",
}

# The composer's reply-length choice, as max_tokens (capped later by model and budget).
REPLY_LENGTHS = {"short": 256, "medium": 1024, "long": 4096}


@dataclass(frozen=True, slots=True)
class BrowserFrame:
    action: Action
    message: str = ""
    model: str = ""
    max_tokens: int | None = None


def max_frame_bytes() -> int:
    return settings.CHAT_MAX_MESSAGE_CHARS * 6 + FRAME_OVERHEAD


def parse_browser_frame(text_data: str | None, bytes_data: bytes | None) -> BrowserFrame:
    """What the chat page sends through htmx's ws-send: form fields as JSON."""
    raw = text_data if text_data is not None else bytes_data
    if raw is None or len(raw) > max_frame_bytes():
        raise errors.InvalidInput("That message is too large to send.", code="message_too_long")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.InvalidInput("The page sent something unreadable; reload it.") from None
    if not isinstance(data, dict):
        raise errors.InvalidInput("The page sent something unexpected; reload it.")
    raw_action = data.get("action", "send")
    action = ACTIONS.get(raw_action) if isinstance(raw_action, str) else None
    if action is None:
        raise errors.InvalidInput(f"Unknown action {str(raw_action)[:40]!r}.")
    message, model = data.get("message", ""), data.get("model", "")
    length = data.get("length") or "medium"
    if not isinstance(message, str) or not isinstance(model, str):
        raise errors.InvalidInput("The message and model must be text.")
    if not isinstance(length, str) or length not in REPLY_LENGTHS:
        raise errors.InvalidInput("Choose a reply length: short, medium or long.")
    return BrowserFrame(
        action=action, message=message, model=model[:100], max_tokens=REPLY_LENGTHS[length]
    )
