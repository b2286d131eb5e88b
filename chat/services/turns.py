"""The turn pipeline: one async service that every door drives.

`run_turn` validates, stores the user's message before anything can fail, builds the
provider request, streams the answer as typed events and records how it ended. Doors
(the browser consumer, later the JSON websocket and the OpenAI-compatible API) only
translate these events. The per-token loop does no synchronous work and no database
write: the growing answer is saved by a background task at most every
CHAT_PERSIST_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from asgiref.sync import sync_to_async
from django.conf import settings

from chat import errors
from chat.models import Conversation, Message
from chat.providers import catalog
from chat.providers.base import (
    ChatMessage,
    ChatRequest,
    Provider,
    StreamEnd,
    TextDelta,
    Usage,
)
from chat.services import conversations

TurnMode = Literal["send", "regenerate", "continue"]

# Newer Claude models refuse an assistant prefill, so a continuation is asked for in a
# user turn that follows the partial answer.
CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, "
    "without repeating anything and without any preamble."
)


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
class Delta:
    """More of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer is complete."""

    message_id: int
    content: str
    stop_reason: str
    usage: Usage
    time_to_first_token_ms: int | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The provider call failed; any partial text is kept on the message."""

    message_id: int
    content: str
    status: str
    code: str
    message: str


TurnEvent = Started | Delta | Finished | Failed


def validate_text(text: object) -> str:
    """The message text, or a specific refusal (empty, not text, too long)."""
    if not isinstance(text, str):
        raise errors.InvalidInput("The message must be text.", code="invalid_request")
    stripped = text.strip()
    if not stripped:
        raise errors.InvalidInput("Type a message before sending.", code="message_empty")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(stripped) > limit:
        raise errors.InvalidInput(
            f"That message is {len(stripped):,} characters; the limit is {limit:,}.",
            code="message_too_long",
            limit=limit,
        )
    return stripped


def _merge_turns(history: list[tuple[str, str]]) -> tuple[ChatMessage, ...]:
    """Join consecutive messages of one role (a failed answer leaves two user turns)."""
    merged: list[ChatMessage] = []
    for role, content in history:
        if merged and merged[-1].role == role:
            merged[-1] = ChatMessage(role, f"{merged[-1].content}\n\n{content}")  # type: ignore[arg-type]
        else:
            merged.append(ChatMessage(role, content))  # type: ignore[arg-type]
    return tuple(merged)


async def run_turn(
    *,
    user_id: int,
    conversation_id: uuid.UUID | str,
    text: object = "",
    mode: TurnMode = "send",
    model: str | None = None,
    max_tokens: int | None = None,
) -> AsyncIterator[TurnEvent]:
    """Run one turn and yield its events; raises ChatError before anything is stored.

    `send` answers a new message; `regenerate` answers the last user message again
    (replacing the answers after it; also the Retry after a failure); `continue` streams
    the rest of a stopped or interrupted answer into the same message.
    """
    if mode == "send":
        text = validate_text(text)
    conversation = await sync_to_async(conversations.conversation_get_for_user)(
        user_id=user_id, conversation_id=conversation_id
    )
    model_id = model or conversation.model or getattr(catalog.default_model(), "id", "")
    model_info, provider = catalog.resolve(model_id)
    started = await sync_to_async(_prepare)(conversation, mode, str(text), model_info.id)
    yield started

    history = await sync_to_async(conversations.history_for_prompt)(
        conversation=conversation, before_id=started.assistant_message_id
    )
    turns = list(history)
    if mode == "continue":
        # For every provider alike: OpenAI would take a trailing assistant turn, but the
        # instruction works everywhere and keeps one behaviour to test.
        turns += [("assistant", started.prefix), ("user", CONTINUE_INSTRUCTION)]
    request = ChatRequest(
        model=model_info.id,
        messages=_merge_turns(turns),
        max_tokens=min(max_tokens or settings.CHAT_DEFAULT_MAX_TOKENS, model_info.max_output),
        system=conversation.system_prompt,
    )
    async for event in _stream_answer(
        provider, request, started.assistant_message_id, prefix=started.prefix
    ):
        yield event


def _prepare(conversation: Conversation, mode: TurnMode, text: str, model: str) -> Started:
    """Store what the turn needs before any provider call (sync, one transaction)."""
    if mode == "send":
        user_message, answer = conversations.turn_messages_create(
            conversation=conversation, text=text, model=model
        )
        return Started(conversation.id, user_message.id, answer.id, model, text)
    if mode == "regenerate":
        user_message, answer, replaced = conversations.turn_regenerate_prepare(
            conversation=conversation, model=model
        )
        return Started(
            conversation.id, user_message.id, answer.id, model, user_message.content,
            mode="regenerate", replaced_message_ids=tuple(replaced),
        )  # fmt: skip
    answer = conversations.turn_continue_prepare(conversation=conversation)
    return Started(
        conversation.id, 0, answer.id, answer.model or model, "",
        mode="continue", prefix=answer.content,
    )  # fmt: skip


async def _stream_answer(
    provider: Provider, request: ChatRequest, message_id: int, *, prefix: str = ""
) -> AsyncIterator[TurnEvent]:
    """Stream the provider's answer, saving it on a timer; record how it ended."""
    parts: list[str] = [prefix] if prefix else []
    started_at = time.monotonic()
    first_token_at: float | None = None
    last_saved = started_at
    saving: asyncio.Task[None] | None = None
    save_partial = sync_to_async(conversations.message_save_partial)
    finish = sync_to_async(conversations.message_finish)
    try:
        async for event in provider.stream(request):
            if isinstance(event, TextDelta):
                if first_token_at is None:
                    first_token_at = time.monotonic()
                parts.append(event.text)
                yield Delta(event.text)
                now = time.monotonic()
                if now - last_saved >= settings.CHAT_PERSIST_INTERVAL and (
                    saving is None or saving.done()
                ):
                    last_saved = now
                    saving = asyncio.create_task(
                        save_partial(message_id=message_id, content="".join(parts))
                    )
            elif isinstance(event, StreamEnd):
                content = "".join(parts)
                ttft = _ms(first_token_at - started_at) if first_token_at else None
                duration = _ms(time.monotonic() - started_at)
                await _settle(saving)
                await finish(
                    message_id=message_id,
                    status=Message.Status.DONE,
                    content=content,
                    stop_reason=event.stop_reason,
                    input_tokens=event.usage.input_tokens,
                    cache_write_tokens=event.usage.cache_write_tokens,
                    cache_read_tokens=event.usage.cache_read_tokens,
                    output_tokens=event.usage.output_tokens,
                    time_to_first_token_ms=ttft,
                    duration_ms=duration,
                )
                yield Finished(message_id, content, event.stop_reason, event.usage, ttft, duration)
    except errors.ProviderError as exc:
        content = "".join(parts)
        status = Message.Status.INTERRUPTED if content else Message.Status.FAILED
        await _settle(saving)
        await finish(
            message_id=message_id,
            status=status,
            content=content,
            error_code=exc.code,
            error_message=exc.message,
            duration_ms=_ms(time.monotonic() - started_at),
        )
        yield Failed(message_id, content, status, exc.code, exc.message)
    except (asyncio.CancelledError, GeneratorExit):
        # Stopped by the user (or the server shutting down): keep what arrived.
        content = "".join(parts)
        await asyncio.shield(
            finish(
                message_id=message_id,
                status=Message.Status.STOPPED,
                content=content,
                stop_reason="stopped",
                duration_ms=_ms(time.monotonic() - started_at),
            )
        )
        raise


async def _settle(task: asyncio.Task[None] | None) -> None:
    """Let an in-flight partial save land before the final write overtakes it."""
    if task is not None and not task.done():
        await asyncio.wait([task])


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
