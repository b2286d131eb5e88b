"""Live turns before background work: with provider limits set, every live call is noted in
the provider's minute, background calls defer while live traffic uses the headroom, and a
live turn is never refused or held up by the limiter. Real turns against the sandbox."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from chat.models import Conversation
from chat.services import limiter
from chat.services.limiter import (
    limiter_acquire_background,
    limiter_keys,
    limiter_usage,
)
from chat.services.turns import Delta, Finished, run_turn

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limits(settings, providers):
    """10 requests and 200,000 tokens a minute per provider, 30% kept for live chat."""
    for name in ("ANTHROPIC", "OPENAI"):
        setattr(settings, f"LLM_{name}_REQUESTS_PER_MINUTE", 10)
        setattr(settings, f"LLM_{name}_TOKENS_PER_MINUTE", 200_000)
    settings.LLM_BACKGROUND_HEADROOM = 0.3
    client = redis.Redis.from_url(settings.REDIS_URL)
    for provider in limiter.PROVIDER_LABELS:
        client.delete(*limiter_keys(provider=provider))
    yield settings
    for provider in limiter.PROVIDER_LABELS:
        client.delete(*limiter_keys(provider=provider))
    client.close()


async def live_turn(user, text: str, *, model: str = "gpt-5-mini") -> list:
    conversation = await Conversation.objects.acreate(user=user)
    return [
        event
        async for event in run_turn(
            user_id=user.id, conversation_id=conversation.id, text=text, model=model
        )
    ]


async def noted(provider: str, requests: int) -> limiter.Usage:
    """The provider's minute once `requests` calls are in it (notes land just after a turn)."""
    deadline = time.monotonic() + 5
    while (usage := limiter_usage(provider=provider)).requests < requests:
        assert time.monotonic() < deadline, f"only {usage.requests} of {requests} noted"
        await asyncio.sleep(0.01)
    return usage


@pytest.mark.parametrize(
    ("model", "provider"), [("gpt-5-mini", "openai"), ("claude-sonnet-4-6", "anthropic")]
)
async def test_a_live_call_is_noted_as_at_least_what_it_used(limits, user, model, provider):
    *_, finished = await live_turn(user, "How are limits counted?", model=model)
    assert isinstance(finished, Finished)
    usage = await noted(provider, 1)
    assert usage.requests == 1
    # Counted up front as prompt + max_tokens: never less than the call really used.
    used = finished.usage
    assert usage.tokens >= 1024 + used.input_tokens
    assert usage.tokens >= used.input_tokens + used.cache_write_tokens + used.output_tokens
    other = "anthropic" if provider == "openai" else "openai"
    assert limiter_usage(provider=other) == limiter.Usage(requests=0, tokens=0)


async def test_answers_from_the_response_cache_are_not_provider_calls(limits, user):
    conversation = await Conversation.objects.acreate(user=user)
    twin = await Conversation.objects.acreate(user=user)
    for target in (conversation, twin):
        events = [
            e
            async for e in run_turn(
                user_id=user.id,
                conversation_id=target.id,
                text="Same question",
                model="gpt-5-mini",
                temperature=0,
            )
        ]
        assert isinstance(events[-1], Finished)
    assert events[-1].cache_hit
    await noted("openai", 1)
    await asyncio.sleep(0.1)  # a second note, were there one, would have landed
    assert limiter_usage(provider="openai").requests == 1


async def test_background_defers_while_live_traffic_uses_the_headroom(limits, user):
    for n in range(5):
        assert isinstance((await live_turn(user, f"Live question {n}"))[-1], Finished)
    await noted("openai", 5)
    # Background may reach 7 of the 10: live traffic has used 5 of them.
    grants = [limiter_acquire_background(provider="openai", tokens=100) for _ in range(3)]
    assert grants[:2] == [0.0, 0.0]
    assert 0 < grants[2] <= 60
    # Claude's minute is its own: background work there is not held back.
    assert limiter_acquire_background(provider="anthropic", tokens=100) == 0.0


async def test_live_turns_are_never_refused_by_the_limiter(limits, user):
    for _ in range(7):
        assert limiter_acquire_background(provider="openai", tokens=100) == 0.0
    assert limiter_acquire_background(provider="openai", tokens=100) > 0  # share spent
    for n in range(6):  # 7 + 6 = 13 calls: past the provider's limit of 10 itself
        events = await live_turn(user, f"Still answered {n}")
        assert isinstance(events[-1], Finished), events[-1]
        assert any(isinstance(e, Delta) for e in events)
    assert (await noted("openai", 13)).requests == 13


async def test_a_live_turn_never_waits_for_its_note(limits, user, monkeypatch):
    release = asyncio.Event()
    notes: list[int] = []
    original = limiter.limiter_note_interactive

    async def held_note(*, provider, tokens):
        await release.wait()  # a limiter that never answers until the turn is over
        notes.append(tokens)
        await original(provider=provider, tokens=tokens)

    monkeypatch.setattr(limiter, "limiter_note_interactive", held_note)
    events = await asyncio.wait_for(live_turn(user, "Do not wait for me"), timeout=20)
    assert isinstance(events[-1], Finished)
    assert notes == []  # the whole answer streamed while the note was still held
    release.set()
    assert (await noted("openai", 1)).requests == 1
    assert len(notes) == 1
