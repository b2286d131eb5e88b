"""Our retry policy around a provider stream (the SDK clients have max_retries=0).

A call is retried when it fails with a retryable error (429, 529, 408, 5xx, a connection error,
no first token in time) and nothing has reached the user yet: once a TextDelta has been yielded,
a failure ends the call and the partial answer is kept. Waits grow as LLM_RETRY_BASE_DELAY *
2^(n-1) (1, 2, 4 s by default) with +-LLM_RETRY_JITTER, capped at LLM_RETRY_MAX_DELAY. A
provider's retry-after (or retry-after-ms) is honoured when it is within the cap; beyond it the
call fails at once, saying when to try again, rather than keeping the person waiting. At most
LLM_RETRY_ATTEMPTS attempts in all, and LLM_RETRY_DEADLINE bounds the whole wait for a first
token: attempts, first-token timeouts and waits together. Each wait is announced with a Retrying
event before it starts, so the person sees why nothing is happening.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from django.conf import settings

from chat import errors
from chat.providers.base import ChatRequest, Provider, ProviderEvent, TextDelta

_WHAT = {
    "rate_limited": "is rate-limiting requests",
    "provider_overloaded": "is overloaded",
    "provider_unavailable": "is unavailable",
    "provider_timeout": "did not answer in time",
}


@dataclass(frozen=True, slots=True)
class Retrying:
    """A wait before another attempt: shown to the person as it starts."""

    attempt: int  # the attempt about to be made, 2..max_attempts
    max_attempts: int
    delay: float
    reason: str  # the error code of the failure
    message: str


def backoff(retry: int) -> float:
    """The wait before retry number `retry` (1-based), jittered and capped."""
    base = settings.LLM_RETRY_BASE_DELAY * 2 ** (retry - 1)
    jitter = settings.LLM_RETRY_JITTER
    return min(base * random.uniform(1 - jitter, 1 + jitter), settings.LLM_RETRY_MAX_DELAY)


def seconds_text(seconds: float) -> str:
    """A wait as a person reads it: "2 s", "0.5 s", "3 min"."""
    if seconds >= 90:
        return f"{math.ceil(seconds / 60)} min"
    if seconds >= 1:
        return f"{round(seconds)} s"
    return f"{max(seconds, 0.01):.2g} s"


async def stream_with_retries(
    provider: Provider, request: ChatRequest, *, model_label: str
) -> AsyncIterator[ProviderEvent | Retrying]:
    """The provider's events, with Retrying events between failed attempts and their retries."""
    loop = asyncio.get_running_loop()
    attempts = max(1, int(settings.LLM_RETRY_ATTEMPTS))
    deadline = loop.time() + settings.LLM_RETRY_DEADLINE
    attempt = 1
    while True:
        started = False
        try:
            async with aclosing(provider.stream(request)) as events:
                while True:
                    if started:
                        event = await anext(events, None)
                    else:
                        async with asyncio.timeout_at(deadline):
                            event = await anext(events, None)
                    if event is None:
                        return
                    started = started or isinstance(event, TextDelta)
                    yield event
        except TimeoutError as exc:
            raise errors.ProviderTimeout(
                f"{model_label} did not answer within {settings.LLM_RETRY_DEADLINE:g} s "
                f"({attempt} attempt{'s' if attempt > 1 else ''}). Try again in a moment."
            ) from exc
        except errors.ProviderError as exc:
            if started or not exc.retryable:
                raise
            delay = _delay(exc, attempt, model_label)
            if attempt >= attempts:
                raise _gave_up(exc, attempt, model_label) from exc
            if loop.time() + delay >= deadline:
                raise _gave_up(exc, attempt, model_label, deadline_hit=True) from exc
            attempt += 1
            yield Retrying(
                attempt=attempt,
                max_attempts=attempts,
                delay=delay,
                reason=exc.code,
                message=(
                    f"{model_label} {_WHAT.get(exc.code, 'failed')}, retrying in "
                    f"{seconds_text(delay)}, attempt {attempt} of {attempts}"
                ),
            )
            await asyncio.sleep(delay)


def _delay(exc: errors.ProviderError, attempt: int, model_label: str) -> float:
    """The wait before the next attempt; fails at once when the provider asks for too long."""
    if exc.retry_after is None:
        return backoff(attempt)
    if exc.retry_after > settings.LLM_RETRY_MAX_DELAY:
        raise exc.but(
            message=(
                f"{model_label} {_WHAT.get(exc.code, 'failed')}; "
                f"try again in {seconds_text(exc.retry_after)}."
            ),
            retryable=False,
        ) from exc
    return exc.retry_after


def _gave_up(
    exc: errors.ProviderError, attempt: int, model_label: str, *, deadline_hit: bool = False
) -> errors.ProviderError:
    if attempt == 1 and not deadline_hit:
        return exc
    tried = f"tried {attempt} time{'s' if attempt > 1 else ''}"
    if deadline_hit:
        tried += f" in {settings.LLM_RETRY_DEADLINE:g} s"
    return exc.but(
        message=f"{model_label} {_WHAT.get(exc.code, 'failed')} ({tried}). Try again in a moment.",
        retryable=False,
    )
