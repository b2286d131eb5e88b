"""The typed events a turn yields; every door translates these and nothing else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from chat.providers.base import Usage
from chat.providers.retry import Retrying

TurnMode = Literal["send", "regenerate", "continue"]

__all__ = [
    "Delta",
    "Failed",
    "Finished",
    "Notice",
    "Retrying",
    "Started",
    "TurnEvent",
    "TurnMode",
]


@dataclass(frozen=True, slots=True)
class Started:
    """The turn is stored and its answer has a placeholder (or, to continue, is reopened)."""

    conversation_id: uuid.UUID
    user_message_id: int
    assistant_message_id: int
    model: str
    user_text: str
    mode: TurnMode = "send"
    replaced_message_ids: tuple[int, ...] = ()
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the person should know about this turn (trimmed history, shrunk reply)."""

    text: str
    level: Literal["info", "warn"] = "info"


@dataclass(frozen=True, slots=True)
class Delta:
    """More of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer is complete, with what it used and cost."""

    message_id: int
    content: str
    stop_reason: str
    usage: Usage
    time_to_first_token_ms: int | None
    duration_ms: int
    cost_micros: int = 0
    retries: int = 0
    cache_hit: bool = False
    saved_micros: int = 0  # what prompt caching or the response cache saved


@dataclass(frozen=True, slots=True)
class Failed:
    """The turn failed or was cut short; any partial text is kept on the message."""

    message_id: int
    content: str
    status: str
    code: str
    message: str
    usage: Usage | None = None
    cost_micros: int = 0


TurnEvent = Started | Notice | Retrying | Delta | Finished | Failed
