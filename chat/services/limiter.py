"""The organisation's per-provider limiter: background work yields to live chat.

Each provider has a sliding minute of requests and tokens in Redis (one Lua script,
chat/services/limiter.lua, counts it per second on Redis's clock, so every process and
thread shares it). Live turns only *note* what they use and are never refused here (the
budgets' per-user rate limits guard them); background calls (batches, documents) are
granted only while everything used in the last minute plus the call stays within
limit x (1 - LLM_BACKGROUND_HEADROOM), for requests and tokens alike. So however large a
batch, the headroom is always left for live chat, and a provider's own limit is only
reached by live traffic.

A call is counted as the providers' limiters count it when it starts: one request and
prompt + max_tokens tokens (OpenAI counts max_tokens up front; Anthropic estimates output
from it), so no correction is needed afterwards. A limit of 0 means unlimited: nothing is
counted and background work is never held back for that dimension.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import redis
import redis.asyncio as aredis
from django.conf import settings

from chat import errors
from chat.providers.base import ProviderName
from chat.redis import redis_client

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SCRIPT_PATH = Path(__file__).with_suffix(".lua")
PROVIDER_LABELS = {"anthropic": "Anthropic", "openai": "OpenAI"}
# Background calls that wait for capacity re-check at least this often.
MAX_POLL_SECONDS = 5.0
# Redis unreachable: background calls are not granted (fail closed) and ask again after this.
STORE_DOWN_WAIT_SECONDS = 5.0
# Errors that mean "the store is unreachable"; others (a script error) are bugs and propagate.
STORE_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, OSError)

Mode = Literal["note", "acquire", "read"]


@dataclass(frozen=True)
class Limits:
    """A provider's limits per minute (0 = unlimited) and the share background work may use."""

    requests: int
    tokens: int
    background_requests: int
    background_tokens: int

    @property
    def unlimited(self) -> bool:
        return self.requests == 0 and self.tokens == 0


@dataclass(frozen=True)
class Usage:
    """Requests and tokens used with a provider in the last minute."""

    requests: int
    tokens: int


def limiter_limits(*, provider: ProviderName) -> Limits:
    """The configured limits of one provider, with the background share worked out."""
    if provider not in PROVIDER_LABELS:
        raise errors.InvalidInput(f"There is no provider called {provider!r}.")
    prefix = f"LLM_{provider.upper()}"
    requests = getattr(settings, f"{prefix}_REQUESTS_PER_MINUTE")
    tokens = getattr(settings, f"{prefix}_TOKENS_PER_MINUTE")
    share = 1 - settings.LLM_BACKGROUND_HEADROOM
    return Limits(
        requests=requests,
        tokens=tokens,
        background_requests=math.floor(requests * share),
        background_tokens=math.floor(tokens * share),
    )


def limiter_keys(*, provider: ProviderName) -> list[str]:
    """The Redis hashes of a provider's minute: requests and tokens per second."""
    return [f"chat:limiter:{{{provider}}}:requests", f"chat:limiter:{{{provider}}}:tokens"]


async def limiter_note_interactive(*, provider: ProviderName, tokens: int) -> None:
    """Record a live call (one request, `tokens` tokens); never refuses, never raises."""
    if limiter_limits(provider=provider).unlimited:
        return
    client = redis_client()
    try:
        await _async_script(client)(
            keys=limiter_keys(provider=provider),
            args=_args("note", requests=1, tokens=tokens, limits=None),
        )
    except (redis.RedisError, OSError):
        # Live chat goes on without it; background work sees a little less traffic.
        # (Any Redis error, not only STORE_ERRORS: nothing here may fail a live turn.)
        logger.warning("could not note a live %s call in the limiter", provider, exc_info=True)


_pending: set[asyncio.Task[None]] = set()


def limiter_note_interactive_soon(*, provider: ProviderName, tokens: int) -> None:
    """Note a live call in the background, so the turn never waits on it."""
    if limiter_limits(provider=provider).unlimited:
        return
    task = asyncio.get_running_loop().create_task(
        limiter_note_interactive(provider=provider, tokens=tokens)
    )
    _pending.add(task)  # a task nobody references can be collected mid-flight
    task.add_done_callback(_pending.discard)


def limiter_acquire_background(*, provider: ProviderName, tokens: int) -> float:
    """Take capacity for a background call: 0.0 when granted (and recorded), else the
    seconds to wait before asking again (also while Redis is unreachable: fail closed).
    Raises InvalidInput for a call that could never fit the background share."""
    limits = _background_limits(provider=provider, tokens=tokens)
    if limits.unlimited:
        return 0.0
    try:
        granted, wait_ms, _, _ = _sync_script()(
            keys=limiter_keys(provider=provider),
            args=_args("acquire", requests=1, tokens=tokens, limits=limits),
        )
    except STORE_ERRORS:
        return _store_down(provider)
    return 0.0 if granted else _wait_seconds(wait_ms)


async def limiter_acquire_background_async(*, provider: ProviderName, tokens: int) -> float:
    """The async twin of limiter_acquire_background."""
    limits = _background_limits(provider=provider, tokens=tokens)
    if limits.unlimited:
        return 0.0
    try:
        granted, wait_ms, _, _ = await _async_script(redis_client())(
            keys=limiter_keys(provider=provider),
            args=_args("acquire", requests=1, tokens=tokens, limits=limits),
        )
    except STORE_ERRORS:
        return _store_down(provider)
    return 0.0 if granted else _wait_seconds(wait_ms)


def limiter_wait_background(
    *, provider: ProviderName, tokens: int, stop: threading.Event | None = None
) -> float:
    """Block until a background call is granted; returns the seconds waited.

    `stop`, when set, ends the wait early with the seconds waited so far (negative), so a
    worker shutting down is not held by the limiter."""
    started = time.monotonic()
    while (wait := limiter_acquire_background(provider=provider, tokens=tokens)) > 0:
        pause = min(wait, MAX_POLL_SECONDS)
        if stop is not None:
            if stop.wait(pause):
                return -(time.monotonic() - started)
        else:
            time.sleep(pause)
    return time.monotonic() - started


def limiter_usage(*, provider: ProviderName) -> Usage:
    """What a provider's minute holds now (live and background together)."""
    limiter_limits(provider=provider)  # a known provider
    _, _, requests, tokens = _sync_script()(
        keys=limiter_keys(provider=provider),
        args=_args("read", requests=0, tokens=0, limits=None),
    )
    return Usage(requests=int(requests), tokens=int(tokens))


def _background_limits(*, provider: ProviderName, tokens: int) -> Limits:
    """The limits a background call is checked against; refuses one that can never fit."""
    limits = limiter_limits(provider=provider)
    if tokens < 0:
        raise errors.InvalidInput("A call cannot use a negative number of tokens.")
    label = PROVIDER_LABELS[provider]
    if limits.requests and limits.background_requests < 1:
        raise errors.InvalidInput(
            f"{label}'s limit of {limits.requests} requests a minute leaves background work "
            f"none after the headroom kept for live chat; raise LLM_{provider.upper()}_"
            "REQUESTS_PER_MINUTE or lower LLM_BACKGROUND_HEADROOM."
        )
    if limits.tokens and tokens > limits.background_tokens:
        raise errors.InvalidInput(
            f"This call needs {tokens:,} tokens, more than the {limits.background_tokens:,} "
            f"a minute background work may use of {label}'s limit; shorten the document or "
            "the reply."
        )
    return limits


def _args(mode: Mode, *, requests: int, tokens: int, limits: Limits | None) -> list[object]:
    request_cap = limits.background_requests if limits and limits.requests else 0
    token_cap = limits.background_tokens if limits and limits.tokens else 0
    return [mode, requests, tokens, request_cap, token_cap, WINDOW_SECONDS]


def _store_down(provider: str) -> float:
    logger.warning("limiter store unreachable: background %s calls wait", provider, exc_info=True)
    return STORE_DOWN_WAIT_SECONDS


def _wait_seconds(wait_ms: int) -> float:
    # -1 (never fits) is ruled out before the call; a rounding edge waits a whole second.
    return wait_ms / 1000 if wait_ms > 0 else 1.0


@cache
def _source() -> str:
    return SCRIPT_PATH.read_text()


_sync_scripts: dict[str, redis.commands.core.Script] = {}
_sync_lock = threading.Lock()


def _sync_script() -> redis.commands.core.Script:
    """The script on a thread-safe sync client for the configured REDIS_URL."""
    url = settings.REDIS_URL
    script = _sync_scripts.get(url)
    if script is None:
        with _sync_lock:
            script = _sync_scripts.get(url)
            if script is None:
                client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
                script = _sync_scripts[url] = client.register_script(_source())
    return script


_async_scripts: weakref.WeakKeyDictionary[aredis.Redis, redis.commands.core.AsyncScript] = (
    weakref.WeakKeyDictionary()
)


def _async_script(client: aredis.Redis) -> redis.commands.core.AsyncScript:
    script = _async_scripts.get(client)
    if script is None:
        script = _async_scripts[client] = client.register_script(_source())
    return script
