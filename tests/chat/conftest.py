"""Fixtures shared by the chat tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.server import SandboxServer
from tests.conftest import point_providers_at


@pytest.fixture(scope="module")
def traced_sandbox() -> Iterator[SandboxServer]:
    """A fast sandbox that records every request it answers (GET /sandbox/trace)."""
    with SandboxServer(tokens_per_second=4000.0, ttft_ms=0, trace=True) as server:
        yield server


@pytest.fixture
def traced(settings, traced_sandbox):
    """Both SDKs pointed at the recording sandbox: what was sent, or that nothing was."""
    return point_providers_at(settings, traced_sandbox)
