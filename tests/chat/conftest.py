"""Fixtures shared by the chat tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def traced_sandbox() -> Iterator[SandboxServer]:
    """A fast sandbox that records every request it answers (GET /sandbox/trace)."""
    with SandboxServer(tokens_per_second=4000.0, ttft_ms=0, trace=True) as server:
        yield server


@pytest.fixture
def traced(settings, traced_sandbox):
    """Both SDKs pointed at the recording sandbox: what was sent, or that nothing was."""
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = traced_sandbox.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = traced_sandbox.base_url + "/v1"
    return traced_sandbox
