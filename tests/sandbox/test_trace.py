"""The optional emission trace: off by default, and when on, one timed entry per streamed delta."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import anthropic
import httpx2
import openai
import pytest

from sandbox.server import SandboxServer
from tests.sandbox.support import ANTHROPIC_MODEL, OPENAI_MODEL


@pytest.fixture(scope="module")
def traced() -> Iterator[SandboxServer]:
    with SandboxServer(tokens_per_second=2000.0, ttft_ms=0, trace=True) as server:
        yield server


def _traces(server: SandboxServer) -> list[dict[str, object]]:
    return httpx2.get(server.base_url + "/sandbox/trace").json()["traces"]


def test_trace_is_off_by_default(sandbox: SandboxServer) -> None:
    assert httpx2.get(sandbox.base_url + "/sandbox/trace").status_code == 404
    assert sandbox.app.state.sandbox.trace is None


def test_trace_records_each_anthropic_delta_with_its_emission_time(traced: SandboxServer) -> None:
    question = f"trace {uuid.uuid4().hex} sandbox-reply:12"
    client = anthropic.Anthropic(api_key="sk-trace", base_url=traced.base_url, max_retries=0)
    before = time.time()
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": question}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    after = time.time()

    [trace] = [t for t in _traces(traced) if t["question"] == question]
    assert trace["provider"] == "anthropic"
    assert trace["model"] == ANTHROPIC_MODEL
    assert trace["id"] == final.id
    deltas = trace["deltas"]
    assert "".join(d[2] for d in deltas) == text
    assert sum(d[1] for d in deltas) == final.usage.output_tokens == 12
    times = [d[0] for d in deltas]
    assert before <= trace["started"] <= times[0]
    assert times == sorted(times)
    assert times[-1] <= after


def test_trace_records_openai_deltas_and_can_be_cleared(traced: SandboxServer) -> None:
    question = f"trace {uuid.uuid4().hex} sandbox-reply:7"
    client = openai.OpenAI(api_key="sk-trace", base_url=traced.base_url + "/v1", max_retries=0)
    stream = client.chat.completions.create(
        model=OPENAI_MODEL, stream=True, messages=[{"role": "user", "content": question}]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    [trace] = [t for t in _traces(traced) if t["question"] == question]
    assert trace["provider"] == "openai"
    assert "".join(d[2] for d in trace["deltas"]) == text
    assert sum(d[1] for d in trace["deltas"]) == 7

    assert httpx2.delete(traced.base_url + "/sandbox/trace").json() == {"traces": []}
    assert _traces(traced) == []


def test_trace_skips_replies_that_are_not_streamed(traced: SandboxServer) -> None:
    question = f"trace {uuid.uuid4().hex} sandbox-reply:3"
    client = anthropic.Anthropic(api_key="sk-trace", base_url=traced.base_url, max_retries=0)
    client.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=10, messages=[{"role": "user", "content": question}]
    )
    assert not [t for t in _traces(traced) if t["question"] == question]
