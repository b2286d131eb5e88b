"""SDK clients, one per event loop and configuration, with the SDK's retries off.

Retries are ours (the provider layer decides what to retry and tells the user), so every
client gets max_retries=0. An async HTTP pool belongs to the loop that opened it, so
clients are kept per running loop.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import anthropic
import httpx2
import openai
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def _timeout() -> httpx2.Timeout:
    return httpx2.Timeout(
        settings.LLM_READ_TIMEOUT, connect=settings.LLM_CONNECT_TIMEOUT, pool=10.0
    )


def _cached(key: tuple[Any, ...], build: Any) -> Any:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    client = per_loop.get(key)
    if client is None:
        client = per_loop[key] = build()
    return client


def anthropic_client() -> anthropic.AsyncAnthropic:
    """The AsyncAnthropic client for this loop, from settings."""
    key = ("anthropic", settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL)
    return _cached(
        key,
        lambda: anthropic.AsyncAnthropic(
            api_key=settings.ANTHROPIC_API_KEY or "unused",
            base_url=settings.ANTHROPIC_BASE_URL or None,
            max_retries=0,
            timeout=_timeout(),
        ),
    )


def openai_client() -> openai.AsyncOpenAI:
    """The AsyncOpenAI client for this loop, from settings."""
    key = ("openai", settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL)
    return _cached(
        key,
        lambda: openai.AsyncOpenAI(
            # OpenAI-compatible local servers often need no key; the SDK insists on one.
            api_key=settings.OPENAI_API_KEY or "unused",
            base_url=settings.OPENAI_BASE_URL or None,
            max_retries=0,
            timeout=_timeout(),
        ),
    )
