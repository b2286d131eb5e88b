"""The provider contract: a request in, a stream of small typed events out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

ProviderName = Literal["anthropic", "openai"]
Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call, normalised: input excludes both cache counts."""

    input_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    output_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the pipeline asks a provider for; max_tokens is never unset."""

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    system: str = ""
    temperature: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    # The conversation id: OpenAI's prompt_cache_key, so one conversation lands on one cache.
    cache_key: str = ""
    # Attached documents, sent after the system prompt and cached with it.
    documents: tuple[str, ...] = ()
    # Stop sequences: the answer ends before the first of them it would contain.
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The provider finished: why, and what it used."""

    stop_reason: str
    usage: Usage


ProviderEvent = TextDelta | StreamEnd


class Provider(Protocol):
    """Streams one chat completion as ProviderEvents; raises ProviderError subclasses."""

    name: ProviderName

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]: ...


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """The wait a provider asked for in retry-after-ms or retry-after (seconds or a date)."""
    response: Any = getattr(exc, "response", None)
    if response is None:
        return None
    headers = response.headers
    try:
        if ms := headers.get("retry-after-ms"):
            return max(0.0, float(ms) / 1000)
        if value := headers.get("retry-after"):
            if value.strip().isdigit() or "." in value:
                return max(0.0, float(value))
            when = parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (ValueError, TypeError):
        return None
    return None
