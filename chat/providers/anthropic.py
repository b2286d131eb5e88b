"""Anthropic Messages adapter: the call through the SDK, the body read lean.

The SDK makes the request (auth, headers, base URL, typed status errors); the SSE body
is read line by line and each event decoded with orjson into our own events, so no
pydantic object is built per token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import orjson

from chat import errors
from chat.providers.base import (
    ChatRequest,
    ProviderEvent,
    StreamEnd,
    TextDelta,
    Usage,
    retry_after_seconds,
)
from chat.providers.clients import anthropic_client

LABEL = "Claude"


def map_error(exc: BaseException, *, started: bool = False) -> errors.ProviderError:
    """Translate an SDK or transport error into the project's hierarchy."""
    if isinstance(exc, anthropic.APIStatusError):
        return _from_status(exc.status_code, exc.type, exc.api_message or str(exc), exc)
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return errors.ProviderTimeout(f"{LABEL} did not answer in time.")
    if started:
        return errors.StreamInterrupted(f"The connection to {LABEL} broke during the answer.")
    return errors.Unavailable(f"{LABEL} could not be reached. Try again in a moment.")


def _from_status(
    status: int, kind: str | None, reason: str, exc: BaseException | None = None
) -> errors.ProviderError:
    retry_after = retry_after_seconds(exc)
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
    if status == 400 and "prompt is too long" in reason:
        return errors.ContextTooLong(f"{LABEL} says the conversation is too long: {reason}")
    if 400 <= status < 500 and status != 408:
        return errors.Rejected(f"{LABEL} refused the request: {reason}", status=status)
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


def _body(request: ChatRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


class AnthropicProvider:
    """Streams Claude answers as TextDelta events and one StreamEnd."""

    name = "anthropic"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        client = anthropic_client()
        started = False
        usage: dict[str, Any] = {}
        stop_reason = "end_turn"
        try:
            async with client.messages.with_streaming_response.create(
                **_body(request), stream=True, extra_headers=request.extra_headers or None
            ) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = orjson.loads(line[5:])
                    kind = event.get("type")
                    if kind == "content_block_delta":
                        delta = event["delta"]
                        if delta.get("type") == "text_delta" and delta["text"]:
                            started = True
                            yield TextDelta(delta["text"])
                    elif kind == "message_start":
                        usage.update(event["message"].get("usage") or {})
                    elif kind == "message_delta":
                        usage.update({k: v for k, v in (event.get("usage") or {}).items() if v})
                        stop_reason = event["delta"].get("stop_reason") or stop_reason
                    elif kind == "error":
                        error = event.get("error") or {}
                        raise _from_status(
                            200, error.get("type"), error.get("message") or "stream error"
                        )
        except errors.ProviderError:
            raise
        except (anthropic.APIError, httpx2.HTTPError) as exc:
            raise map_error(exc, started=started) from exc
        yield StreamEnd(stop_reason=stop_reason, usage=_usage(usage))
