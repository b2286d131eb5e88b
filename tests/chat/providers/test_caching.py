"""Prompt caching: where Anthropic breakpoints go, and what caching saves, on the sandbox."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from chat.providers import pricing, tokens
from chat.providers.anthropic import MAX_BREAKPOINTS, build_body
from chat.providers.base import ChatMessage, ChatRequest, StreamEnd, TextDelta, Usage
from chat.providers.specs import spec
from tests.chat.providers.conftest import ADAPTERS, collect

LONG = "Answer in plain English and cite the documents when you can. " * 150  # ~1,800 tokens


def marks(body: dict) -> list[str]:
    """Where the body's cache_control breakpoints are: "system" or "message N"."""
    found = [f"system {i}" for i, b in enumerate(body.get("system", [])) if "cache_control" in b]
    for i, message in enumerate(body["messages"]):
        if isinstance(message["content"], list):
            found += [f"message {i}" for b in message["content"] if "cache_control" in b]
    return found


def test_a_short_prompt_gets_no_breakpoint():
    request = ChatRequest("claude-sonnet-4-6", (ChatMessage("user", "hi"),), 10, system="Be kind.")
    assert marks(build_body(request)) == []


def test_a_long_system_prompt_and_the_final_message_are_marked():
    history = (
        ChatMessage("user", "one"),
        ChatMessage("assistant", "two"),
        ChatMessage("user", "three"),
    )
    body = build_body(ChatRequest("claude-sonnet-4-6", history, 10, system=LONG))
    assert marks(body) == ["system 0", "message 2"]
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert len(marks(body)) <= MAX_BREAKPOINTS


def test_documents_are_cached_with_the_system_prompt():
    request = ChatRequest(
        "claude-sonnet-4-6", (ChatMessage("user", "q"),), 10, system="Be kind.", documents=(LONG,)
    )
    body = build_body(request)
    assert [b["text"] for b in body["system"]] == ["Be kind.", LONG]
    assert marks(body) == ["system 1", "message 0"]


def test_a_long_conversation_with_a_short_system_prompt_marks_only_the_final_message():
    history = tuple(
        ChatMessage("user" if i % 2 == 0 else "assistant", "lorem ipsum dolor " * 60)
        for i in range(7)
    )
    body = build_body(ChatRequest("claude-sonnet-4-6", history, 10, system="Be kind."))
    assert marks(body) == ["message 6"]


def test_the_minimum_is_the_models():
    # ~1,800 tokens: over Sonnet's 1,024 minimum, under Haiku 4.5's 4,096.
    assert tokens.count_text(LONG) > 1024
    request = ChatRequest("claude-haiku-4-5", (ChatMessage("user", "q"),), 10, system=LONG)
    assert marks(build_body(request)) == []
    assert marks(build_body(ChatRequest("claude-sonnet-4-6", request.messages, 10, system=LONG)))


def test_the_one_hour_ttl_is_a_setting(settings):
    settings.LLM_CACHE_TTL = "1h"
    body = build_body(
        ChatRequest("claude-sonnet-4-6", (ChatMessage("user", "q"),), 10, system=LONG)
    )
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


async def turn(provider: str, request: ChatRequest) -> tuple[str, Usage]:
    events = await collect(ADAPTERS[provider].stream(request))
    assert isinstance(events[-1], StreamEnd)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1].usage


def saving(model_id: str, usage: Usage) -> int:
    """What the call would have cost with no cache, minus what it cost."""
    model = spec(model_id)
    uncached = Usage(input_tokens=usage.prompt_tokens, output_tokens=usage.output_tokens)
    return pricing.cost_micros(model, uncached) - pricing.cost_micros(model, usage)


@pytest.mark.parametrize(
    ("provider", "model_id"), [("anthropic", "claude-sonnet-4-6"), ("openai", "gpt-5-mini")]
)
async def test_the_second_turn_of_a_long_conversation_reads_the_cache_and_costs_less(
    providers, provider, model_id
):
    conversation = str(uuid.uuid4())
    system = f"[{conversation}] {LONG}"
    first = ChatRequest(
        model_id,
        (ChatMessage("user", "What is a cache?"),),
        60,
        system=system,
        cache_key=conversation,
    )
    answer, usage1 = await turn(provider, first)
    second = ChatRequest(
        model_id,
        (
            *first.messages,
            ChatMessage("assistant", answer),
            ChatMessage("user", "And a breakpoint?"),
        ),
        60,
        system=system,
        cache_key=conversation,
    )
    _, usage2 = await turn(provider, second)

    assert usage2.cache_read_tokens >= 1024
    prices = spec(model_id).prices
    if provider == "anthropic":
        # The first turn wrote system + first message; the second reads exactly that.
        assert usage2.cache_read_tokens == usage1.cache_write_tokens
        assert usage2.cache_write_tokens > 0  # and writes its own prefix for the third turn
    # Cheaper by the price difference on the tokens read, less the premium on those written,
    # both from the catalog (rounding happens once per cost, so within a micro-dollar).
    expected = usage2.cache_read_tokens * (prices.input - prices.cache_read) - (
        usage2.cache_write_tokens * (prices.cache_write_5m - prices.input)
    )
    assert abs(Decimal(saving(model_id, usage2)) - expected) <= 1
    assert pricing.cost_micros(spec(model_id), usage2) < pricing.cost_micros(
        spec(model_id), Usage(input_tokens=usage2.prompt_tokens, output_tokens=usage2.output_tokens)
    )
