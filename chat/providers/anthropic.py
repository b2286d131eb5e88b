"""Anthropic Messages adapter: the call through the SDK, the body read lean.

The SDK makes the request (auth, headers, base URL, typed status errors); the SSE body is read
line by line and each event decoded with orjson into our own events, so no pydantic object is
built per token. Prompt-cache breakpoints are placed here (see `build_body`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

import anthropic
import httpx2
import orjson
from django.conf import settings

from chat import errors
from chat.providers import specs, tokens
from chat.providers.base import (
    ChatRequest,
    ProviderEvent,
    StreamEnd,
    TextDelta,
    Usage,
    retry_after_seconds,
)
from chat.providers.clients import anthropic_client
from chat.providers.streaming import Watchdog

LABEL = "Claude"
MAX_BREAKPOINTS = 4
_CONTEXT_PHRASES = ("prompt is too long", "exceed context limit", "context window")


def map_error(exc: BaseException, *, started: bool = False) -> errors.ProviderError:
    """Translate an SDK or transport error into the project's hierarchy."""
    if isinstance(exc, anthropic.APIStatusError):
        reason = exc.api_message or exc.message or str(exc)
        return from_status(exc.status_code, exc.type, reason, retry_after_seconds(exc))
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return errors.ProviderTimeout(f"{LABEL} did not answer in time.", retryable=not started)
    if started:
        return errors.StreamInterrupted(f"The connection to {LABEL} broke during the answer.")
    return errors.Unavailable(f"{LABEL} could not be reached. Try again in a moment.")


def from_status(
    status: int | None, kind: str | None, reason: str, retry_after: float | None = None
) -> errors.ProviderError:
    """The error for an HTTP status or, mid-stream (status None), an error event's type."""
    if status == 429 or kind == "rate_limit_error":
        return errors.RateLimited(
            f"{LABEL} is rate-limiting requests.", status=status, retry_after=retry_after
        )
    if status == 529 or kind == "overloaded_error":
        return errors.Overloaded(f"{LABEL} is overloaded.", status=status, retry_after=retry_after)
    if status in (401, 403) or kind in ("authentication_error", "permission_error"):
        return errors.AuthenticationFailed(
            f"{LABEL} refused the service's credentials: {reason}", status=status
        )
    if status == 413 or kind == "request_too_large":
        return errors.Rejected(f"The request is too large for {LABEL}: {reason}", status=status)
    if status == 400 and any(phrase in reason for phrase in _CONTEXT_PHRASES):
        return errors.ContextTooLong(
            f"{LABEL} says the conversation is too long: {reason}", status=status
        )
    if status is not None and 400 <= status < 500 and status != 408:
        return errors.Rejected(f"{LABEL} refused the request: {reason}", status=status)
    if status is None:
        return errors.Unavailable(f"{LABEL} reported an error: {reason}")
    return errors.Unavailable(
        f"{LABEL} is unavailable (HTTP {status}).", status=status, retry_after=retry_after
    )


def _usage(raw: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=raw.get("input_tokens") or 0,
        cache_write_tokens=raw.get("cache_creation_input_tokens") or 0,
        cache_read_tokens=raw.get("cache_read_input_tokens") or 0,
        output_tokens=raw.get("output_tokens") or 0,
    )


def _reaches(texts: list[str], needed: int) -> int:
    """o200k tokens of texts, counting only until `needed` is reached (cheap on huge prompts)."""
    counted = 0
    for text in texts:
        if counted >= needed:
            break
        # A prefix of ~20 characters a token settles most texts without encoding all of them.
        head = text[: (needed - counted) * 20]
        n = tokens.count_text(head)
        if n < needed - counted and len(head) < len(text):
            n = tokens.count_text(text)
        counted += n
    return counted


def _system_blocks(request: ChatRequest) -> list[dict[str, Any]]:
    texts = [t for t in (request.system, *request.documents) if t]
    return [{"type": "text", "text": t} for t in texts]


def build_body(request: ChatRequest, *, cache: bool = True) -> dict[str, Any]:
    """The Messages request body, with prompt-cache breakpoints.

    Two breakpoints at most (the API allows 4): the last system block (system prompt and
    documents), so every turn of every conversation with that system prompt reads it; and the
    final user message's last block, which writes the whole conversation so far, so that the next
    turn (the same prefix plus an answer and a question) reads it. Each is placed only where its
    prefix reaches the model's minimum cacheable length: below it the API would not cache anyway.
    """
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    system = _system_blocks(request)
    if system:
        body["system"] = system
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    # The installed SDK's messages.create takes no temperature (current Claude models
    # dropped sampling parameters), so none is sent; the response cache still keys on it.
    if not cache:
        return body
    model = specs.spec(request.model)
    floor = model.min_cacheable if model else 1024
    control: dict[str, str] = {"type": "ephemeral"}
    if settings.LLM_CACHE_TTL == "1h":
        control["ttl"] = "1h"
    counted = _reaches([b["text"] for b in system], floor)
    if system and counted >= floor:
        system[-1]["cache_control"] = control
    if counted < floor:
        counted += _reaches([m.content for m in request.messages], floor - counted)
    messages = body["messages"]
    if messages and counted >= floor:
        last = messages[-1]
        last["content"] = [{"type": "text", "text": last["content"], "cache_control": control}]
    return body


def count_body(request: ChatRequest) -> dict[str, Any]:
    """The count_tokens body for a request (breakpoints do not change the count)."""
    body = build_body(request, cache=False)
    return {k: v for k, v in body.items() if k in ("model", "messages", "system")}


async def count_tokens(body: dict[str, Any]) -> int:
    """Anthropic's count of a prompt, through the SDK's count_tokens."""
    try:
        result = await anthropic_client().messages.count_tokens(**body)
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise map_error(exc) from exc
    return result.input_tokens


def _known_usage(raw: dict[str, Any], parts: list[str]) -> Usage:
    """Usage so far: what the provider reported, output at least the streamed text's count."""
    usage = _usage(raw)
    return replace(
        usage, output_tokens=max(usage.output_tokens, tokens.claude_text_tokens("".join(parts)))
    )


class AnthropicProvider:
    """Streams Claude answers as TextDelta events and one StreamEnd."""

    name = "anthropic"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        client = anthropic_client()
        watchdog = Watchdog()
        parts: list[str] = []
        usage: dict[str, Any] = {}
        stop_reason = "end_turn"
        finished = False
        try:
            async with AsyncExitStack() as stack:
                watchdog.arm(False)
                response = await stack.enter_async_context(
                    client.messages.with_streaming_response.create(
                        **build_body(request),
                        stream=True,
                        extra_headers=request.extra_headers or None,
                    ),
                )
                watchdog.waiting = False
                lines = response.iter_lines()
                while True:
                    watchdog.arm(bool(parts))
                    line = await anext(lines, None)
                    watchdog.waiting = False
                    if line is None:
                        break
                    if not line.startswith("data:"):
                        continue
                    event = orjson.loads(line[5:])
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta.get("type") == "text_delta" and delta["text"]:
                            parts.append(delta["text"])
                            yield TextDelta(delta["text"])
                    elif kind == "message_start":
                        usage.update(event["message"].get("usage") or {})
                    elif kind == "message_delta":
                        usage.update({k: v for k, v in (event.get("usage") or {}).items() if v})
                        stop_reason = event["delta"].get("stop_reason") or stop_reason
                    elif kind == "message_stop":
                        finished = True
                    elif kind == "error":
                        error = event.get("error") or {}
                        raise from_status(
                            None, error.get("type"), error.get("message") or "stream error"
                        )
        except errors.ProviderError as exc:
            raise _after(exc, usage, parts) from exc.__cause__
        except asyncio.CancelledError:
            if not watchdog.timed_out():
                raise
            message = watchdog.message(LABEL, started=bool(parts))
            raise _after(errors.ProviderTimeout(message), usage, parts) from None
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise _after(map_error(exc, started=bool(parts)), usage, parts) from exc
        finally:
            watchdog.close()
        if not finished:
            raise _after(
                errors.StreamInterrupted(f"{LABEL} ended the answer without finishing it."),
                usage,
                parts,
            )
        yield StreamEnd(stop_reason=stop_reason, usage=_usage(usage))


def _after(
    exc: errors.ProviderError, usage: dict[str, Any], parts: list[str]
) -> errors.ProviderError:
    """The error with the usage known so far; once text has streamed it is not retryable."""
    if not usage and not parts:
        return exc
    return exc.but(usage=_known_usage(usage, parts), retryable=exc.retryable and not parts)
