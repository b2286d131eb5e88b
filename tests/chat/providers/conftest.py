"""Fixtures for the provider layer: short waits through settings, fresh price snapshots."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from chat import errors
from chat.providers import pricing
from chat.providers.anthropic import AnthropicProvider
from chat.providers.base import ChatMessage, ChatRequest
from chat.providers.openai import OpenAIProvider

MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5-mini"}
ADAPTERS = {"anthropic": AnthropicProvider(), "openai": OpenAIProvider()}


@pytest.fixture(autouse=True)
def _fresh_prices():
    pricing.prices_invalidate()
    yield
    pricing.prices_invalidate()


@pytest.fixture
def fast_retries(settings):
    """Retry waits of 10, 20, 40 ms, so retry tests take no time (never by patching sleep)."""
    settings.LLM_RETRY_ATTEMPTS = 4
    settings.LLM_RETRY_BASE_DELAY = 0.01
    settings.LLM_RETRY_JITTER = 0.2
    settings.LLM_RETRY_MAX_DELAY = 20.0
    settings.LLM_RETRY_DEADLINE = 30.0
    return settings


def request_for(provider: str, text: str, **kwargs) -> ChatRequest:
    """A one-message request; a fresh tag keeps sandbox attempt counters and caches apart."""
    kwargs.setdefault("max_tokens", 200)
    tagged = f"{text} [{uuid.uuid4().hex[:8]}]"
    return ChatRequest(model=MODELS[provider], messages=(ChatMessage("user", tagged),), **kwargs)


async def collect(events: AsyncIterator) -> list:
    return [event async for event in events]


async def failure(events: AsyncIterator) -> tuple[list, errors.ProviderError]:
    """The events a stream yielded before it failed, and its error."""
    seen: list = []
    try:
        async for event in events:
            seen.append(event)
    except errors.ProviderError as exc:
        return seen, exc
    raise AssertionError(f"the stream did not fail: {seen[-1:]}")
