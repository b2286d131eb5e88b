"""The provider limiter against the real Redis: live calls are noted, background calls take
only what live traffic leaves inside limit x (1 - headroom), and the minute slides."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from chat import errors
from chat.services import limiter
from chat.services.limiter import (
    limiter_acquire_background,
    limiter_acquire_background_async,
    limiter_keys,
    limiter_note_interactive,
    limiter_usage,
    limiter_wait_background,
)


@pytest.fixture
def store(settings):
    """A sync client on the test Redis; the limiter's keys are dropped before and after."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)

    def drop() -> None:
        for provider in limiter.PROVIDER_LABELS:
            client.delete(*limiter_keys(provider=provider))

    drop()
    yield client
    drop()
    client.close()


@pytest.fixture
def limits(settings, store):
    """OpenAI at 10 requests and 1,000 tokens a minute, 30% kept for live chat."""
    settings.LLM_OPENAI_REQUESTS_PER_MINUTE = 10
    settings.LLM_OPENAI_TOKENS_PER_MINUTE = 1000
    settings.LLM_ANTHROPIC_REQUESTS_PER_MINUTE = 10
    settings.LLM_ANTHROPIC_TOKENS_PER_MINUTE = 1000
    settings.LLM_BACKGROUND_HEADROOM = 0.3
    return settings


def seed(store, *, provider: str, seconds_ago: int, requests: int, tokens: int) -> None:
    """Put use into the minute as if it had happened `seconds_ago` by Redis's clock."""
    now_s, _ = store.time()
    requests_key, tokens_key = limiter_keys(provider=provider)
    store.hincrby(requests_key, str(now_s - seconds_ago), requests)
    store.hincrby(tokens_key, str(now_s - seconds_ago), tokens)


def test_background_takes_only_the_share_left_after_headroom(limits):
    grants = [limiter_acquire_background(provider="openai", tokens=10) for _ in range(7)]
    assert grants == [0.0] * 7
    wait = limiter_acquire_background(provider="openai", tokens=10)
    assert 59.0 <= wait <= 60.0  # the first of the seven leaves the minute in ~60 s
    assert limiter_usage(provider="openai") == limiter.Usage(requests=7, tokens=70)


def test_tokens_are_capped_like_requests(limits):
    assert limiter_acquire_background(provider="openai", tokens=400) == 0.0
    assert limiter_acquire_background(provider="openai", tokens=301) > 0  # 701 > 700
    assert limiter_acquire_background(provider="openai", tokens=300) == 0.0
    assert limiter_usage(provider="openai") == limiter.Usage(requests=2, tokens=700)


async def test_interactive_use_shrinks_what_background_gets(limits):
    for _ in range(5):
        await limiter_note_interactive(provider="openai", tokens=100)
    granted = [
        await limiter_acquire_background_async(provider="openai", tokens=10) for _ in range(3)
    ]
    assert granted[:2] == [0.0, 0.0]
    assert granted[2] > 0  # 5 live + 2 background = the 7 background may reach
    assert limiter_usage(provider="openai") == limiter.Usage(requests=7, tokens=520)


async def test_interactive_calls_are_never_refused(limits):
    for _ in range(25):  # far beyond the limit itself
        await limiter_note_interactive(provider="anthropic", tokens=500)
    assert limiter_usage(provider="anthropic") == limiter.Usage(requests=25, tokens=12_500)
    assert limiter_acquire_background(provider="anthropic", tokens=1) > 0


def test_providers_have_separate_minutes(limits):
    for _ in range(7):
        assert limiter_acquire_background(provider="openai", tokens=1) == 0.0
    assert limiter_acquire_background(provider="openai", tokens=1) > 0
    assert limiter_acquire_background(provider="anthropic", tokens=1) == 0.0


def test_background_never_exceeds_the_share_under_concurrency(limits, settings):
    settings.LLM_OPENAI_REQUESTS_PER_MINUTE = 100
    settings.LLM_OPENAI_TOKENS_PER_MINUTE = 10_000  # background share: 70 requests, 7,000 tokens
    start = threading.Barrier(16)

    def worker(_: int) -> int:
        start.wait()
        return sum(
            limiter_acquire_background(provider="openai", tokens=110) == 0.0 for _ in range(20)
        )

    with ThreadPoolExecutor(16) as pool:
        granted = sum(pool.map(worker, range(16)))
    # 320 attempts; tokens bind before requests: 63 x 110 = 6,930 <= 7,000 < 64 x 110.
    assert granted == 63
    assert limiter_usage(provider="openai") == limiter.Usage(requests=63, tokens=6930)


def test_wait_is_until_enough_of_the_minute_has_passed(limits, store):
    seed(store, provider="openai", seconds_ago=30, requests=4, tokens=0)
    seed(store, provider="openai", seconds_ago=10, requests=3, tokens=0)
    wait = limiter_acquire_background(provider="openai", tokens=1)
    assert 29.0 <= wait <= 30.0  # the four of 30 s ago leave first; that frees enough
    seed(store, provider="anthropic", seconds_ago=50, requests=1, tokens=650)
    seed(store, provider="anthropic", seconds_ago=20, requests=1, tokens=40)
    wait = limiter_acquire_background(provider="anthropic", tokens=100)
    assert 9.0 <= wait <= 10.0  # the 650 tokens of 50 s ago must go for 100 more to fit


def test_the_window_slides(limits, store):
    seed(store, provider="openai", seconds_ago=59, requests=7, tokens=0)
    wait = limiter_acquire_background(provider="openai", tokens=1)
    assert 0 < wait <= 1.0
    time.sleep(wait + 0.05)
    assert limiter_acquire_background(provider="openai", tokens=1) == 0.0
    assert limiter_usage(provider="openai") == limiter.Usage(requests=1, tokens=1)


def test_unlimited_when_zero_records_nothing(settings, store):
    settings.LLM_OPENAI_REQUESTS_PER_MINUTE = settings.LLM_OPENAI_TOKENS_PER_MINUTE = 0
    grants = [limiter_acquire_background(provider="openai", tokens=10**6) for _ in range(50)]
    assert grants == [0.0] * 50
    assert store.exists(*limiter_keys(provider="openai")) == 0


async def test_unlimited_live_calls_cost_no_round_trip(settings, store):
    settings.LLM_ANTHROPIC_REQUESTS_PER_MINUTE = settings.LLM_ANTHROPIC_TOKENS_PER_MINUTE = 0
    await limiter_note_interactive(provider="anthropic", tokens=100)
    assert store.exists(*limiter_keys(provider="anthropic")) == 0


def test_one_dimension_unlimited_checks_only_the_other(limits, settings):
    settings.LLM_OPENAI_TOKENS_PER_MINUTE = 0
    assert limiter_acquire_background(provider="openai", tokens=10**6) == 0.0
    settings.LLM_ANTHROPIC_REQUESTS_PER_MINUTE = 0
    grants = [limiter_acquire_background(provider="anthropic", tokens=1) for _ in range(30)]
    assert grants == [0.0] * 30


def test_a_call_larger_than_the_background_share_is_refused_with_why(limits):
    with pytest.raises(errors.InvalidInput, match="needs 701 tokens, more than the 700"):
        limiter_acquire_background(provider="openai", tokens=701)
    assert limiter_usage(provider="openai") == limiter.Usage(requests=0, tokens=0)


def test_a_limit_too_small_for_any_background_work_says_what_to_change(limits, settings):
    settings.LLM_OPENAI_REQUESTS_PER_MINUTE = 1  # 70% of 1 request is none
    with pytest.raises(errors.InvalidInput, match="LLM_BACKGROUND_HEADROOM"):
        limiter_acquire_background(provider="openai", tokens=1)


def test_unknown_provider_is_refused(limits):
    with pytest.raises(errors.InvalidInput, match="no provider called 'mistral'"):
        limiter_acquire_background(provider="mistral", tokens=1)  # type: ignore[arg-type]


def test_wait_background_blocks_until_granted(limits, store):
    seed(store, provider="openai", seconds_ago=59, requests=7, tokens=0)
    waited = limiter_wait_background(provider="openai", tokens=1)
    assert 0 < waited <= 1.5
    assert limiter_usage(provider="openai").requests == 1


def test_wait_background_gives_up_when_told_to_stop(limits, store):
    seed(store, provider="openai", seconds_ago=0, requests=7, tokens=0)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    waited = limiter_wait_background(provider="openai", tokens=1, stop=stop)
    assert -1.0 < waited < 0
    assert limiter_usage(provider="openai").requests == 7


async def test_live_notes_survive_redis_being_down(limits, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    await limiter_note_interactive(provider="openai", tokens=10)
    assert "could not note a live openai call" in caplog.text


def test_background_waits_while_redis_is_down(limits, settings, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert limiter_acquire_background(provider="openai", tokens=10) == 5.0
    assert "background openai calls wait" in caplog.text


async def test_background_async_waits_while_redis_is_down(limits, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert await limiter_acquire_background_async(provider="openai", tokens=10) == 5.0
