"""Adapters against the sandbox: usage normalised for both providers, failures carry usage."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest

from chat import errors
from chat.providers import tokens
from chat.providers.base import ChatMessage, ChatRequest, StreamEnd, TextDelta
from chat.providers.specs import spec
from tests.chat.providers.conftest import ADAPTERS, MODELS, collect, failure, request_for

PROVIDERS = ["anthropic", "openai"]


def long_request(provider: str, **kwargs) -> ChatRequest:
    """A prompt past every cache minimum, unique to the test."""
    system = f"[{uuid.uuid4()}] " + "You are a careful assistant who answers briefly. " * 200
    return ChatRequest(
        model=MODELS[provider],
        messages=(ChatMessage("user", "What is prompt caching?"),),
        max_tokens=50,
        system=system,
        **kwargs,
    )


async def end_of(provider: str, request: ChatRequest) -> StreamEnd:
    events = await collect(ADAPTERS[provider].stream(request))
    assert isinstance(events[-1], StreamEnd)
    return events[-1]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_uncached_usage_counts_the_whole_prompt_as_input(providers, provider):
    request = request_for(provider, "sandbox-reply:12 hello")
    end = await end_of(provider, request)
    model = spec(request.model)
    assert end.usage.cache_read_tokens == end.usage.cache_write_tokens == 0
    assert end.usage.output_tokens == 12
    if provider == "openai":
        assert end.usage.input_tokens == tokens.local_prompt_tokens(model, request)
    else:
        assert 0 < end.usage.input_tokens <= tokens.local_prompt_tokens(model, request)


async def test_anthropic_input_tokens_exclude_cache_writes_and_reads(providers):
    request = long_request("anthropic")
    first = (await end_of("anthropic", request)).usage
    second = (await end_of("anthropic", request)).usage
    # First call writes the cache, second reads it; input_tokens is only what is neither.
    assert first.cache_write_tokens > 1000
    assert first.cache_read_tokens == 0
    assert second.cache_read_tokens == first.cache_write_tokens
    assert second.cache_write_tokens == 0
    assert first.input_tokens == second.input_tokens < 100
    assert first.prompt_tokens == second.prompt_tokens


async def test_openai_cached_tokens_are_taken_out_of_prompt_tokens(providers):
    request = long_request("openai", cache_key=str(uuid.uuid4()))
    first = (await end_of("openai", request)).usage
    second = (await end_of("openai", request)).usage
    exact = tokens.local_prompt_tokens(spec(request.model), request)
    assert first.cache_read_tokens == 0
    assert first.input_tokens == exact
    # prompt_tokens (exact) includes cached_tokens on the wire; ours splits them.
    assert second.cache_read_tokens >= 1024
    assert second.input_tokens == exact - second.cache_read_tokens
    assert second.prompt_tokens == exact
    assert second.cache_write_tokens == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_dropped_connection_is_interrupted_with_the_usage_so_far(providers, provider):
    request = request_for(provider, "sandbox-fault:drop@4")
    seen, error = await failure(ADAPTERS[provider].stream(request))
    assert isinstance(error, errors.StreamInterrupted)
    text = "".join(e.text for e in seen if isinstance(e, TextDelta))
    usage = error.usage
    assert usage is not None
    assert usage.input_tokens > 0
    # The provider never reported output; the streamed text is counted instead.
    assert usage.output_tokens >= tokens.count_text(text) == 4
    assert error.code == "stream_interrupted"


async def test_an_anthropic_error_event_is_classified_by_its_type(providers):
    request = request_for("anthropic", "sandbox-fault:error@2")
    _, error = await failure(ADAPTERS["anthropic"].stream(request))
    assert isinstance(error, errors.Overloaded)
    assert error.message == "Claude is overloaded."
    assert error.retryable is False  # text had streamed


async def test_openai_sends_the_conversation_as_its_prompt_cache_key(providers):
    request = long_request("openai", cache_key="conversation-a")
    other = replace(request, cache_key="conversation-b")
    await end_of("openai", request)
    # The sandbox, like OpenAI, scopes its prefix cache by prompt_cache_key.
    assert (await end_of("openai", other)).usage.cache_read_tokens == 0
    assert (await end_of("openai", request)).usage.cache_read_tokens > 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_slow_consumer_never_trips_the_idle_timeout(providers, settings, provider):
    settings.LLM_IDLE_TIMEOUT = settings.LLM_FIRST_TOKEN_TIMEOUT = 0.2
    events = []
    async for event in ADAPTERS[provider].stream(request_for(provider, "sandbox-reply:3 hi")):
        events.append(event)
        await asyncio.sleep(0.3)  # longer than the timeout, but it is our time, not theirs
    assert isinstance(events[-1], StreamEnd)
    assert len([e for e in events if isinstance(e, TextDelta)]) == 3
