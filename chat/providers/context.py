"""Fitting a conversation into the model's context window by dropping its oldest turns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from chat import errors
from chat.providers import tokens
from chat.providers.base import ChatRequest
from chat.providers.specs import ModelInfo

Counter = Callable[[ChatRequest], int]


@dataclass(frozen=True, slots=True)
class FitResult:
    """The request that fits, its prompt tokens, and how many old messages were left out."""

    request: ChatRequest
    prompt_tokens: int
    dropped_turns: int


def fit_to_context(
    model: ModelInfo, request: ChatRequest, prompt_tokens: int | Counter
) -> FitResult:
    """Drop the oldest messages until prompt + max_tokens fits the window; refuse if it cannot.

    The system prompt, documents and the latest message are never dropped, and what remains
    starts with a user message. `prompt_tokens` is the request's count, or a function that counts
    a request; with a function, the trimmed request is recounted, otherwise the dropped messages'
    local counts are subtracted (exact for GPT; for Claude a count that errs low, so the
    remainder errs high).
    """
    count = prompt_tokens if callable(prompt_tokens) else None
    total = count(request) if count else int(prompt_tokens)  # type: ignore[arg-type]
    window = model.context_window
    if total + request.max_tokens <= window:
        return FitResult(request, total, 0)
    messages = list(request.messages)
    dropped = 0
    while total + request.max_tokens > window:
        if len(messages) <= 1:
            need = total + request.max_tokens
            raise errors.ContextTooLong(
                f"Your message and the system prompt need {need:,} tokens "
                f"({request.max_tokens:,} of them for the reply); {model.label} takes "
                f"{window:,} including the reply.",
                needed=need,
                window=window,
            )
        # One turn: the oldest message, then whatever precedes the next user message.
        total -= tokens.message_tokens_floor(model, messages.pop(0))
        dropped += 1
        while len(messages) > 1 and messages[0].role != "user":
            total -= tokens.message_tokens_floor(model, messages.pop(0))
            dropped += 1
        if count:
            total = count(replace(request, messages=tuple(messages)))
    return FitResult(replace(request, messages=tuple(messages)), total, dropped)
