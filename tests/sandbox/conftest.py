"""Fixtures for the sandbox tests: one fast sandbox for the session and SDK clients against it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anthropic
import openai
import pytest

from sandbox.server import SandboxServer


@pytest.fixture(scope="session")
def sandbox() -> Iterator[SandboxServer]:
    """A sandbox fast enough that replies take milliseconds."""
    with SandboxServer(tokens_per_second=2000.0, ttft_ms=0) as server:
        yield server


@pytest.fixture
def api_key() -> str:
    """A fresh API key, so each test has its own prompt caches and fault counters."""
    return f"sk-test-{uuid.uuid4().hex}"


@pytest.fixture
def claude(sandbox: SandboxServer, api_key: str) -> anthropic.Anthropic:
    """A sync Anthropic client that never retries."""
    return anthropic.Anthropic(api_key=api_key, base_url=sandbox.base_url, max_retries=0)


@pytest.fixture
def async_claude(sandbox: SandboxServer, api_key: str) -> anthropic.AsyncAnthropic:
    """An async Anthropic client that never retries."""
    return anthropic.AsyncAnthropic(api_key=api_key, base_url=sandbox.base_url, max_retries=0)


@pytest.fixture
def gpt(sandbox: SandboxServer, api_key: str) -> openai.OpenAI:
    """A sync OpenAI client that never retries."""
    return openai.OpenAI(api_key=api_key, base_url=sandbox.base_url + "/v1", max_retries=0)


@pytest.fixture
def async_gpt(sandbox: SandboxServer, api_key: str) -> openai.AsyncOpenAI:
    """An async OpenAI client that never retries."""
    return openai.AsyncOpenAI(api_key=api_key, base_url=sandbox.base_url + "/v1", max_retries=0)
