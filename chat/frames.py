"""Parse the frames a door receives: sizes and types checked before anything else."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
from django.conf import settings

from chat import errors

# Room for the message itself (up to 4 bytes a character in JSON) plus the other fields.
FRAME_OVERHEAD = 8_192


Action = Literal["send", "stop", "regenerate", "continue"]
# Retry after a failure is answering the last message again.
ACTIONS: dict[str, Action] = {
    "send": "send",
    "stop": "stop",
    "regenerate": "regenerate",
    "retry": "regenerate",
    "continue": "continue",
}


@dataclass(frozen=True, slots=True)
class BrowserFrame:
    action: Action
    message: str = ""
    model: str = ""


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
    action = ACTIONS.get(data.get("action", "send"))  # type: ignore[arg-type]
    if action is None:
        raise errors.InvalidInput(f"Unknown action {str(data.get('action'))[:40]!r}.")
    message, model = data.get("message", ""), data.get("model", "")
    if not isinstance(message, str) or not isinstance(model, str):
        raise errors.InvalidInput("The message and model must be text.")
    return BrowserFrame(action=action, message=message, model=model[:100])
