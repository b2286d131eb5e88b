"""OpenAI Chat Completions adapter (and any OpenAI-compatible server), read lean."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx2
import openai
import orjson

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
from chat.providers.clients import openai_client
from chat.providers.streaming import Watchdog

LABEL = "GPT"


def map_error(exc: BaseException, *, started: bool = False) -> errors.ProviderError:
    """Translate an SDK or transport error into the project's hierarchy."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        body = body.get("error", body) if isinstance(body.get("error"), dict) else body
        reason = body.get("message") or exc.message
        return from_status(exc.status_code, body.get("code"), reason, retry_after_seconds(exc))
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return errors.ProviderTimeout(f"{LABEL} did not answer in time.", retryable=not started)
    if started:
        return errors.StreamInterrupted(f"The connection to {LABEL} broke during the answer.")
    return errors.Unavailable(f"{LABEL} could not be reached. Try again in a moment.")


def from_status(
    status: int | None, code: str | None, reason: str, retry_after: float | None = None
) -> errors.ProviderError:
    """The error for an HTTP status or, mid-stream (status None), an error object's code."""
    if status == 429 or code == "rate_limit_exceeded":
        return errors.RateLimited(
            f"{LABEL} is rate-limiting requests.", status=status, retry_after=retry_after
        )
    if status == 529 or code == "overloaded":
        return errors.Overloaded(f"{LABEL} is overloaded.", status=status, retry_after=retry_after)
    if status in (401, 403):
        return errors.AuthenticationFailed(
            f"{LABEL} refused the service's credentials: {reason}", status=status
        )
    if code == "context_length_exceeded":
        return errors.ContextTooLong(
            f"{LABEL} says the conversation is too long: {reason}", status=status
        )
    if status == 413:
        return errors.Rejected(f"The request is too large for {LABEL}: {reason}", status=status)
    if status is not None and 400 <= status < 500 and status != 408:
        return errors.Rejected(f"{LABEL} refused the request: {reason}", status=status)
    if status is None:
        return errors.Unavailable(f"{LABEL} reported an error: {reason}")
    return errors.Unavailable(
        f"{LABEL} is unavailable (HTTP {status}).", status=status, retry_after=retry_after
    )


def _usage(raw: dict[str, Any]) -> Usage:
    """OpenAI's prompt_tokens includes cached_tokens; ours excludes them."""
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(
        input_tokens=(raw.get("prompt_tokens") or 0) - cached,
        cache_read_tokens=cached,
        output_tokens=raw.get("completion_tokens") or 0,
    )


def build_body(request: ChatRequest) -> dict[str, Any]:
    """The Chat Completions body: system prompt and documents as system messages, then turns."""
    messages: list[dict[str, str]] = [
        {"role": "system", "content": text} for text in (request.system, *request.documents) if text
    ]
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": request.max_tokens,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.stop:
        body["stop"] = list(request.stop)
    if request.cache_key:
        # Routes a conversation's calls to the same cache; caching itself is automatic.
        body["prompt_cache_key"] = request.cache_key
    return body


def _known_usage(request: ChatRequest, parts: list[str]) -> Usage:
    """Usage of a broken stream: OpenAI reports none until the end, so both sides are counted
    here (the prompt exactly; cached tokens unknown, so all of it as uncached input)."""
    model = specs.spec(request.model)
    if model is None:
        model = specs.ModelInfo(request.model, "openai", "", 0, 0, "o200k_base", 1024, None)
    return Usage(
        input_tokens=tokens.local_prompt_tokens(model, request),
        output_tokens=tokens.count_text("".join(parts), model.encoding),
    )


def _after(
    exc: errors.ProviderError, request: ChatRequest, parts: list[str]
) -> errors.ProviderError:
    """The error with the usage known so far; once text has streamed it is not retryable."""
    if not parts:
        return exc
    return exc.but(usage=_known_usage(request, parts), retryable=False)


class OpenAIProvider:
    """Streams GPT answers as TextDelta events and one StreamEnd."""

    name = "openai"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        client = openai_client()
        watchdog = Watchdog()
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish_reason = "stop"
        done = False
        try:
            async with AsyncExitStack() as stack:
                watchdog.arm(False)
                response = await stack.enter_async_context(
                    client.chat.completions.with_streaming_response.create(
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
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        done = True
                        break
                    chunk = orjson.loads(payload)
                    if error := chunk.get("error"):
                        raise from_status(
                            None, error.get("code"), error.get("message") or "stream error"
                        )
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            parts.append(text)
                            yield TextDelta(text)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                    if chunk.get("usage"):
                        usage = chunk["usage"]
        except errors.ProviderError as exc:
            raise _after(exc, request, parts) from exc.__cause__
        except asyncio.CancelledError:
            if not watchdog.timed_out():
                raise
            message = watchdog.message(LABEL, started=bool(parts))
            raise _after(errors.ProviderTimeout(message), request, parts) from None
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise _after(map_error(exc, started=bool(parts)), request, parts) from exc
        finally:
            watchdog.close()
        if not done and not usage:
            raise _after(
                errors.StreamInterrupted(f"{LABEL} ended the answer without finishing it."),
                request,
                parts,
            )
        yield StreamEnd(stop_reason=finish_reason, usage=_usage(usage))
