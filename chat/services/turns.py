"""The turn pipeline: one async service that every door drives.

    validate -> build the request (history, count, fit the context window, max_tokens)
    -> reserve the budget (rate limit, tokens, cost; may shrink max_tokens)
    -> store the turn -> Started -> response cache or provider (with retries)
    -> Finished / Failed -> settle the reservation and write the usage ledger

Nothing is stored and nothing reaches a provider when a check or the budget refuses:
the refusal is raised (a ChatError) before the first event. Doors (the browser consumer,
the JSON websocket and the OpenAI-compatible API) only translate the events. The
per-token loop does no synchronous work and no database write: the growing answer is
saved by a background task at most every CHAT_PERSIST_INTERVAL seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings

from chat import errors
from chat.models import Conversation, Message
from chat.providers import catalog
from chat.providers.base import ChatRequest, Provider, StreamEnd, TextDelta, Usage
from chat.providers.retry import Retrying, stream_with_retries
from chat.providers.specs import ModelInfo
from chat.providers.tokens import estimate_output_tokens
from chat.services import accounting, conversations, prompts, response_cache, turn_records
from chat.services.accounting import Outcome
from chat.services.conversations import NewConversation
from chat.services.events import (
    Delta,
    Failed,
    Finished,
    Notice,
    Started,
    TurnEvent,
    TurnMode,
)
from chat.services.limiter import limiter_note_interactive_soon
from chat.services.prompts import validate_text

__all__ = ["Delta", "Failed", "Finished", "Notice", "Retrying", "Started", "run_turn"]


async def run_turn(
    *,
    user_id: int,
    conversation_id: uuid.UUID | str | None = None,
    new_conversation: NewConversation | None = None,
    text: object = "",
    mode: TurnMode = "send",
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    stop: tuple[str, ...] = (),
) -> AsyncIterator[TurnEvent]:
    """Run one turn and yield its events; raises ChatError before anything is stored.

    `send` answers a new message; `regenerate` answers the last user message again
    (replacing the answers after it, bypassing the response cache; also the Retry after
    a failure); `continue` streams the rest of a stopped or interrupted answer into it.
    A `new_conversation` (instead of a conversation_id) is sent, and stored with the turn.
    """
    text = validate_text(text) if mode == "send" else ""
    if new_conversation is not None:
        assert mode == "send"
        assert conversation_id is None
        # Nothing to read: the conversation is built here and stored with the turn's messages.
        conversation = Conversation(
            user_id=user_id,
            system_prompt=new_conversation.system,
            title=new_conversation.title(text),
            billing_team_id=new_conversation.billing_team_id,
        )
        documents: tuple[prompts.PromptDocument, ...] = ()
        read: tuple[list, str] | errors.ChatError = (
            prompts.send_turns(new_conversation.history, text),
            "",
        )
    else:
        assert conversation_id is not None
        conversation, documents, read = await sync_to_async(turn_records.turn_read)(
            user_id=user_id, conversation_id=conversation_id, mode=mode, text=text
        )
    model_id = model or conversation.model or getattr(catalog.default_model(), "id", "")
    model_info, provider = catalog.resolve(model_id)
    if isinstance(read, errors.ChatError):
        raise read
    turns, prefix = read
    request = prompts.build_request(
        conversation=conversation,
        model=model_info,
        turns=turns,
        max_tokens=max_tokens,
        temperature=temperature,
        documents=documents,
    )
    prompt_tokens = await prompts.count_request_tokens(model_info, request, documents)
    fit = prompts.fit_request(model_info, request, prompt_tokens, documents=documents)
    reservation = await accounting.reserve(
        user_id=user_id,
        team_id=conversation.billing_team_id,
        model=model_info,
        prompt_tokens=fit.prompt_tokens,
        max_tokens=fit.request.max_tokens,
    )
    request = dataclasses.replace(fit.request, max_tokens=reservation.max_tokens, stop=stop)
    try:
        started = await sync_to_async(turn_records.turn_store)(
            conversation, mode, text, model_info.id, new=new_conversation
        )
    except BaseException:
        await accounting.release(reservation)
        raise
    yield started
    if fit.dropped_turns:
        yield Notice(
            f"The conversation is longer than {model_info.label} can read at once: the "
            f"{fit.dropped_turns} oldest messages were left out of this answer.",
            level="warn",
        )
    if reservation.notice:
        yield Notice(reservation.notice, level="warn")

    answer = _Answer(
        model=model_info,
        message_id=started.assistant_message_id,
        prompt_tokens=fit.prompt_tokens,
        prefix=prefix,
    )
    settled = False

    async def settle() -> None:
        nonlocal settled
        if not settled:
            settled = True
            await accounting.settle_and_record(
                reservation=reservation,
                conversation_id=conversation.id,
                message_id=started.assistant_message_id,
                outcome=answer.outcome(),
            )

    try:
        async for event in _answer(provider, request, answer, bypass_cache=mode != "send"):
            if isinstance(event, Finished | Failed):
                await settle()  # before the end is shown, so the meter that follows is true
            yield event
    finally:
        await asyncio.shield(settle())  # stopped, or the caller went away


@dataclasses.dataclass
class _Answer:
    """The answer as it grows, and what it has used: enough to settle at any ending."""

    model: ModelInfo
    message_id: int
    prompt_tokens: int
    prefix: str = ""
    parts: list[str] = dataclasses.field(default_factory=list)
    usage: Usage | None = None
    status: str = "stopped"
    retries: int = 0
    cache_hit: bool = False
    started_at: float = dataclasses.field(default_factory=time.monotonic)
    first_token_at: float | None = None

    @property
    def text(self) -> str:
        return self.prefix + "".join(self.parts)

    @property
    def new_text(self) -> str:
        return "".join(self.parts)

    def ttft_ms(self) -> int | None:
        if self.first_token_at is None:
            return None
        return _ms(self.first_token_at - self.started_at)

    def duration_ms(self) -> int:
        return _ms(time.monotonic() - self.started_at)

    def outcome(self) -> Outcome:
        """What to settle and record: reported usage, or an estimate when cut short."""
        usage = self.usage
        if usage is None:
            # Stopped (or failed without a report): the provider has read the prompt if
            # anything came back, and produced what we saw.
            output = estimate_output_tokens(self.model, self.new_text) if self.parts else 0
            usage = Usage(
                input_tokens=self.prompt_tokens if self.parts else 0, output_tokens=output
            )
        cost = 0 if self.cache_hit else accounting.call_cost(self.model, usage)
        return Outcome(
            usage=Usage() if self.cache_hit else usage,
            cost_micros=cost,
            outcome="cache_hit" if self.cache_hit else self.status,
            time_to_first_token_ms=self.ttft_ms(),
            duration_ms=self.duration_ms(),
            retries=self.retries,
            cache_hit=self.cache_hit,
        )


async def _answer(
    provider: Provider, request: ChatRequest, answer: _Answer, *, bypass_cache: bool
) -> AsyncIterator[TurnEvent]:
    """The response cache when it has the answer, else the provider (storing its answer)."""
    key = response_cache.cache_key(request)
    if key is None:
        async for event in _stream(provider, request, answer):
            yield event
        return
    cached = None if bypass_cache else await response_cache.lookup(key)
    if cached is None and not bypass_cache and not await response_cache.claim(key):
        cached = await response_cache.wait_for(key)  # an identical call is under way
    if cached is not None:
        async for event in _replay(cached, answer):
            yield event
        return
    finished: Finished | None = None
    try:
        async for event in _stream(provider, request, answer):
            if isinstance(event, Finished):
                finished = event
            yield event
    finally:
        if finished is not None and finished.stop_reason not in {"max_tokens", "length"}:
            await response_cache.store(
                key,
                content=finished.content,
                stop_reason=finished.stop_reason,
                usage=finished.usage,
                cost=finished.cost_micros,
            )
        else:
            await response_cache.release(key)


async def _replay(cached: response_cache.CachedAnswer, answer: _Answer) -> AsyncIterator[TurnEvent]:
    """Answer from the cache at once; it costs nothing and is recorded as a cache hit."""
    answer.cache_hit = True
    answer.first_token_at = time.monotonic()
    answer.parts.append(cached.content)
    answer.status = "finished"
    yield Delta(cached.content)
    await sync_to_async(conversations.message_finish)(
        message_id=answer.message_id,
        status=Message.Status.DONE,
        content=answer.text,
        stop_reason=cached.stop_reason,
        cache_hit=True,
        time_to_first_token_ms=answer.ttft_ms(),
        duration_ms=answer.duration_ms(),
    )
    yield Finished(
        answer.message_id, answer.text, cached.stop_reason, Usage(), answer.ttft_ms(),
        answer.duration_ms(), cost_micros=0, cache_hit=True, saved_micros=cached.cost_micros,
    )  # fmt: skip


async def _stream(
    provider: Provider, request: ChatRequest, answer: _Answer
) -> AsyncIterator[TurnEvent]:
    """Stream the provider's answer, saving it on a timer; record how it ended."""
    last_saved = answer.started_at
    saving: asyncio.Task[None] | None = None
    save_partial = sync_to_async(conversations.message_save_partial)
    finish = sync_to_async(conversations.message_finish)
    try:
        async with contextlib.aclosing(
            stream_with_retries(provider, request, model_label=answer.model.provider_label)
        ) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    if answer.first_token_at is None:
                        answer.first_token_at = time.monotonic()
                        # The provider's minute counts this call (prompt + max_tokens) so
                        # background work leaves room; noted off the path to the first byte.
                        limiter_note_interactive_soon(
                            provider=answer.model.provider,
                            tokens=answer.prompt_tokens + request.max_tokens,
                        )
                    answer.parts.append(event.text)
                    yield Delta(event.text)
                    now = time.monotonic()
                    if now - last_saved >= settings.CHAT_PERSIST_INTERVAL and (
                        saving is None or saving.done()
                    ):
                        last_saved = now
                        saving = asyncio.create_task(
                            save_partial(message_id=answer.message_id, content=answer.text)
                        )
                elif isinstance(event, Retrying):
                    answer.retries += 1
                    yield event
                elif isinstance(event, StreamEnd):
                    answer.usage, answer.status = event.usage, "finished"
                    await _settle(saving)
                    await finish(
                        message_id=answer.message_id,
                        status=Message.Status.DONE,
                        content=answer.text,
                        stop_reason=event.stop_reason,
                        input_tokens=event.usage.input_tokens,
                        cache_write_tokens=event.usage.cache_write_tokens,
                        cache_read_tokens=event.usage.cache_read_tokens,
                        output_tokens=event.usage.output_tokens,
                        cost_micros=(cost := accounting.call_cost(answer.model, event.usage)),
                        retries=answer.retries,
                        time_to_first_token_ms=answer.ttft_ms(),
                        duration_ms=answer.duration_ms(),
                    )
                    yield Finished(
                        answer.message_id, answer.text, event.stop_reason, event.usage,
                        answer.ttft_ms(), answer.duration_ms(), cost_micros=cost,
                        retries=answer.retries,
                        saved_micros=accounting.cache_savings(answer.model, event.usage),
                    )  # fmt: skip
    except errors.ProviderError as exc:
        answer.usage = exc.usage
        answer.status = "interrupted" if answer.text else "failed"
        await _settle(saving)
        outcome = answer.outcome()
        await finish(
            message_id=answer.message_id,
            status=answer.status,
            content=answer.text,
            error_code=exc.code,
            error_message=exc.message,
            input_tokens=outcome.usage.input_tokens,
            cache_write_tokens=outcome.usage.cache_write_tokens,
            cache_read_tokens=outcome.usage.cache_read_tokens,
            output_tokens=outcome.usage.output_tokens,
            cost_micros=outcome.cost_micros,
            retries=answer.retries,
            duration_ms=answer.duration_ms(),
        )
        yield Failed(
            answer.message_id, answer.text, answer.status, exc.code, exc.message,
            usage=outcome.usage, cost_micros=outcome.cost_micros,
        )  # fmt: skip
    except (asyncio.CancelledError, GeneratorExit):
        if answer.status in ("finished", "failed", "interrupted"):
            raise  # closed after its end was recorded: nothing was stopped
        # Stopped by the person (or the server shutting down): keep what arrived.
        answer.status = "stopped"
        outcome = answer.outcome()
        await asyncio.shield(
            finish(
                message_id=answer.message_id,
                status=Message.Status.STOPPED,
                content=answer.text,
                stop_reason="stopped",
                input_tokens=outcome.usage.input_tokens,
                output_tokens=outcome.usage.output_tokens,
                cost_micros=outcome.cost_micros,
                duration_ms=answer.duration_ms(),
            )
        )
        raise


async def _settle(task: asyncio.Task[None] | None) -> None:
    """Let an in-flight partial save land before the final write overtakes it."""
    if task is not None and not task.done():
        await asyncio.wait([task])


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
