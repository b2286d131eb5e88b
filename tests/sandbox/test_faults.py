"""Faults on demand, as both SDKs see them: status errors, retries that recover, hangs, breaks."""

from __future__ import annotations

import time

import anthropic
import httpx2
import openai
import pytest

from sandbox.server import SandboxServer
from tests.sandbox.support import ANTHROPIC_MODEL, OPENAI_MODEL

BROKEN_STREAM = (anthropic.APIConnectionError, openai.APIConnectionError, httpx2.TransportError)


def _claude_says(
    client: anthropic.Anthropic, text: str, **kwargs: object
) -> anthropic.types.Message:
    return client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": text}],
        **kwargs,  # type: ignore[arg-type]
    )


def _gpt_says(client: openai.OpenAI, text: str, **kwargs: object) -> object:
    return client.chat.completions.create(
        model=OPENAI_MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": text}],
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("kind", "error", "error_type"),
    [
        ("429", anthropic.RateLimitError, "rate_limit_error"),
        ("529", anthropic.OverloadedError, "overloaded_error"),
        ("500", anthropic.InternalServerError, "api_error"),
        ("503", anthropic.ServiceUnavailableError, "api_error"),
    ],
)
def test_anthropic_status_faults_raise_the_sdk_error(
    claude: anthropic.Anthropic, kind: str, error: type[Exception], error_type: str
) -> None:
    with pytest.raises(error) as caught:
        _claude_says(claude, "Hello", extra_headers={"x-sandbox-fault": kind})

    assert caught.value.status_code == int(kind)
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == error_type
    assert caught.value.response.headers["request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("kind", "error", "code"),
    [
        ("429", openai.RateLimitError, "rate_limit_exceeded"),
        ("529", openai.InternalServerError, "overloaded"),
        ("500", openai.InternalServerError, None),
        ("503", openai.InternalServerError, None),
    ],
)
def test_openai_status_faults_raise_the_sdk_error(
    gpt: openai.OpenAI, kind: str, error: type[openai.APIStatusError], code: str | None
) -> None:
    with pytest.raises(error) as caught:
        _gpt_says(gpt, "Hello", extra_headers={"x-sandbox-fault": kind})

    assert caught.value.status_code == int(kind)
    assert caught.value.code == code


def test_rate_limit_carries_retry_after_headers(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    with pytest.raises(anthropic.RateLimitError) as from_claude:
        _claude_says(claude, "Hello sandbox-fault:429")
    with pytest.raises(openai.RateLimitError) as from_gpt:
        _gpt_says(gpt, "Hello sandbox-fault:429")

    for caught in (from_claude, from_gpt):
        assert caught.value.response.headers["retry-after"] == "1"
        assert caught.value.response.headers["retry-after-ms"] == "1000"


def test_counted_fault_fails_n_attempts_then_recovers(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            _claude_says(claude, "Please answer. sandbox-fault:529x2")
        with pytest.raises(openai.RateLimitError):
            _gpt_says(gpt, "Please answer.", extra_headers={"x-sandbox-fault": "429x2"})

    assert _claude_says(claude, "Please answer. sandbox-fault:529x2").stop_reason == "end_turn"
    assert _gpt_says(gpt, "Please answer.", extra_headers={"x-sandbox-fault": "429x2"})


def test_counted_fault_counts_each_distinct_request_apart(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError):
        _claude_says(claude, "One. sandbox-fault:500x1")
    with pytest.raises(anthropic.InternalServerError):
        _claude_says(claude, "Two. sandbox-fault:500x1")

    assert _claude_says(claude, "One. sandbox-fault:500x1").stop_reason == "end_turn"


def test_counted_fault_starts_again_after_recovering(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError):
        _claude_says(claude, "Again. sandbox-fault:429x1")
    _claude_says(claude, "Again. sandbox-fault:429x1")

    with pytest.raises(anthropic.RateLimitError):
        _claude_says(claude, "Again. sandbox-fault:429x1")


def test_unknown_fault_header_is_refused(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="x-sandbox-fault"):
        _claude_says(claude, "Hello", extra_headers={"x-sandbox-fault": "explode"})


def test_hang_ends_in_a_client_timeout_without_blocking_others(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.APITimeoutError):
        _claude_says(claude.with_options(timeout=0.3), "sandbox-fault:hang")
    with pytest.raises(openai.APITimeoutError):
        _gpt_says(gpt.with_options(timeout=0.3), "Hi", extra_headers={"x-sandbox-fault": "hang"})

    assert time.monotonic() - started < 10  # two 0.3 s timeouts, loose for a loaded machine
    assert _claude_says(claude, "Still there?").stop_reason == "end_turn"


def test_hung_and_abandoned_requests_end_when_the_client_leaves() -> None:
    with SandboxServer() as server:
        client = anthropic.Anthropic(api_key="sk", base_url=server.base_url, max_retries=0)
        with pytest.raises(anthropic.APITimeoutError):
            _claude_says(client.with_options(timeout=0.2), "sandbox-fault:hang")
        with client.messages.stream(
            model=ANTHROPIC_MODEL,
            max_tokens=200,
            messages=[{"role": "user", "content": "sandbox-fault:slow"}],
        ) as stream:
            next(e for e in stream if e.type == "content_block_delta")
        time.sleep(0.1)
        stopping = time.monotonic()
    # A request still running would hold shutdown for its 1 s grace period.

    assert time.monotonic() - stopping < 0.95  # under the 1 s grace a live request would hold


def _stream_claude(client: anthropic.Anthropic, text: str, seen: list[str]) -> None:
    """Stream a reply, recording each event's type as it arrives."""
    with client.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=200, messages=[{"role": "user", "content": text}]
    ) as stream:
        for event in stream:
            seen.append(event.type)


def _stream_gpt(client: openai.OpenAI, fault: str, seen: list[str]) -> None:
    """Stream a reply, recording each chunk's content (or finish reason) as it arrives."""
    stream = _gpt_says(client, "Go.", stream=True, extra_headers={"x-sandbox-fault": fault})
    for chunk in stream:  # type: ignore[attr-defined]
        if chunk.choices:
            seen.append(chunk.choices[0].delta.content or chunk.choices[0].finish_reason or "")


async def _stream_gpt_async(client: openai.AsyncOpenAI, fault: str, seen: list[str]) -> None:
    """Stream a reply with the async client, recording each chunk's content as it arrives."""
    stream = await client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "Go."}],
        stream=True,
        extra_headers={"x-sandbox-fault": fault},
    )
    async for chunk in stream:
        if chunk.choices:
            seen.append(chunk.choices[0].delta.content or chunk.choices[0].finish_reason or "")


def test_anthropic_error_event_arrives_after_n_deltas(claude: anthropic.Anthropic) -> None:
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        _stream_claude(claude, "Go. sandbox-fault:error@5", seen)

    assert seen.count("content_block_delta") == 5
    assert "message_stop" not in seen
    assert caught.value.status_code == 200
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_openai_error_object_arrives_after_n_chunks(gpt: openai.OpenAI) -> None:
    seen: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        _stream_gpt(gpt, "error@4", seen)

    assert len([s for s in seen if s]) == 4
    assert caught.value.body["type"] == "server_error"


def test_error_fault_without_streaming_is_a_500(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    with pytest.raises(anthropic.InternalServerError):
        _claude_says(claude, "Go. sandbox-fault:error@3")
    with pytest.raises(openai.InternalServerError):
        _gpt_says(gpt, "Go. sandbox-fault:error@3")


def test_anthropic_dropped_stream_breaks_after_n_deltas(claude: anthropic.Anthropic) -> None:
    seen: list[str] = []
    with pytest.raises(BROKEN_STREAM):
        _stream_claude(claude, "Go. sandbox-fault:drop@6", seen)

    assert seen.count("content_block_delta") == 6
    assert not {"content_block_stop", "message_delta", "message_stop"} & set(seen)


def test_openai_dropped_stream_breaks_after_n_chunks(gpt: openai.OpenAI) -> None:
    seen: list[str] = []
    with pytest.raises(BROKEN_STREAM):
        _stream_gpt(gpt, "drop@3", seen)

    assert len([s for s in seen if s]) == 3
    assert "stop" not in seen


async def test_async_openai_dropped_stream_breaks_after_n_chunks(
    async_gpt: openai.AsyncOpenAI,
) -> None:
    seen: list[str] = []
    with pytest.raises(BROKEN_STREAM):
        await _stream_gpt_async(async_gpt, "drop@3", seen)

    assert len([s for s in seen if s]) == 3
    await async_gpt.close()


def test_dropped_connection_without_streaming_is_a_connection_error(
    claude: anthropic.Anthropic, gpt: openai.OpenAI
) -> None:
    with pytest.raises(anthropic.APIConnectionError):
        _claude_says(claude, "Go. sandbox-fault:drop@0")
    with pytest.raises(openai.APIConnectionError):
        _gpt_says(gpt, "Go. sandbox-fault:drop@0")


def test_slow_fault_paces_one_token_per_second(claude: anthropic.Anthropic) -> None:
    # Lower bounds only: a loaded machine can delay a token on either side, so the gap
    # between two arrivals proves nothing, but the answer cannot end sooner than paced.
    started = time.monotonic()
    arrivals = []
    with claude.messages.stream(
        model=ANTHROPIC_MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Go. sandbox-fault:slow sandbox-reply:2"}],
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                arrivals.append(time.monotonic())

    assert len(arrivals) == 2
    assert arrivals[1] - started >= 0.95  # the second token a second after the first
    assert arrivals[1] - started < 15  # loose: only that it did not hang


def test_tokens_are_paced_after_the_time_to_first_token() -> None:
    with SandboxServer(tokens_per_second=100.0, ttft_ms=200) as server:
        client = openai.OpenAI(api_key="sk", base_url=server.base_url + "/v1", max_retries=0)
        started = time.monotonic()
        stream = _gpt_says(client, "Go. sandbox-reply:30", stream=True)
        arrivals = [
            time.monotonic() - started
            for chunk in stream  # type: ignore[attr-defined]
            if chunk.choices and chunk.choices[0].delta.content
        ]

    assert len(arrivals) == 30
    # Lower bounds only (robust on a loaded machine): nothing before the time to first
    # token, and 29 more tokens at 100/s take at least 0.29 s after it.
    assert arrivals[0] >= 0.19
    assert arrivals[-1] >= 0.2 + 0.28
    assert arrivals[-1] < 15  # loose: only that it did not hang
