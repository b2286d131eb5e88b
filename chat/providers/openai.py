"""OpenAI Chat Completions adapter (and any OpenAI-compatible server), read lean."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
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
from chat.providers.clients import openai_client

LABEL = "GPT"


def map_error(exc: BaseException, *, started: bool = False) -> errors.ProviderError:
    """Translate an SDK or transport error into the project's hierarchy."""
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return _from_status(exc.status_code, body.get("code"), exc.message, exc)
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return errors.ProviderTimeout(f"{LABEL} did not answer in time.")
    if started:
        return errors.StreamInterrupted(f"The connection to {LABEL} broke during the answer.")
    return errors.Unavailable(f"{LABEL} could not be reached. Try again in a moment.")


def _from_status(
    status: int, code: str | None, reason: str, exc: BaseException | None = None
) -> errors.ProviderError:
    retry_after = retry_after_seconds(exc)
    if status == 429:
        return errors.RateLimited(
            f"{LABEL} is rate-limiting requests.", status=status, retry_after=retry_after
        )
    if status == 529:
        return errors.Overloaded(f"{LABEL} is overloaded.", status=status, retry_after=retry_after)
    if status in (401, 403):
        return errors.AuthenticationFailed(
            f"{LABEL} refused the service's credentials: {reason}", status=status
        )
    if code == "context_length_exceeded":
        return errors.ContextTooLong(f"{LABEL} says the conversation is too long: {reason}")
    if 400 <= status < 500 and status != 408:
        return errors.Rejected(f"{LABEL} refused the request: {reason}", status=status)
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


def _body(request: ChatRequest) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_completion_tokens": request.max_tokens,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


class OpenAIProvider:
    """Streams GPT answers as TextDelta events and one StreamEnd."""

    name = "openai"

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        client = openai_client()
        started = False
        usage: dict[str, Any] = {}
        finish_reason = "stop"
        try:
            async with client.chat.completions.with_streaming_response.create(
                **_body(request), stream=True, extra_headers=request.extra_headers or None
            ) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = orjson.loads(payload)
                    if error := chunk.get("error"):
                        raise _from_status(
                            int(error.get("status") or 500),
                            error.get("code"),
                            error.get("message") or "stream error",
                        )
                    for choice in chunk.get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            started = True
                            yield TextDelta(text)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
                    if chunk.get("usage"):
                        usage = chunk["usage"]
        except errors.ProviderError:
            raise
        except (openai.APIError, httpx2.HTTPError) as exc:
            raise map_error(exc, started=started) from exc
        yield StreamEnd(stop_reason=finish_reason, usage=_usage(usage))
