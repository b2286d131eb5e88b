"""The retry policy: the real SDKs against the sandbox, and a scripted provider for the rest."""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from chat import errors
from chat.providers.base import ChatRequest, StreamEnd, TextDelta
from chat.providers.retry import Retrying, backoff, stream_with_retries
from tests.chat.providers.conftest import ADAPTERS, collect, failure, request_for

PROVIDERS = ["anthropic", "openai"]


def retries(provider: str, request: ChatRequest, label: str = "Claude"):
    return stream_with_retries(ADAPTERS[provider], request, model_label=label)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_overloaded_twice_is_retried_twice_then_the_answer_streams(
    providers, fast_retries, provider
):
    events = await collect(retries(provider, request_for(provider, "hi sandbox-fault:529x2")))
    waits = [e for e in events if isinstance(e, Retrying)]
    assert [(w.attempt, w.max_attempts, w.reason) for w in waits] == [
        (2, 4, "provider_overloaded"),
        (3, 4, "provider_overloaded"),
    ]
    assert waits[0].message.startswith("Claude is overloaded, retrying in ")
    assert waits[0].message.endswith("attempt 2 of 4")
    # The waits come before any text, and the answer then streams to its end.
    assert events[:2] == waits
    assert any(isinstance(e, TextDelta) for e in events[2:])
    assert isinstance(events[-1], StreamEnd)


def test_backoff_doubles_within_the_jitter_and_stops_at_the_cap(settings):
    settings.LLM_RETRY_BASE_DELAY, settings.LLM_RETRY_JITTER = 1.0, 0.2
    settings.LLM_RETRY_MAX_DELAY = 3.0
    for retry, base in [(1, 1.0), (2, 2.0)]:
        delays = [backoff(retry) for _ in range(200)]
        assert all(base * 0.8 <= d <= base * 1.2 for d in delays)
        assert max(delays) - min(delays) > base * 0.2  # jittered, not fixed
    assert all(backoff(3) <= 3.0 for _ in range(50))  # 4 s capped at 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_rate_limit_waits_as_long_as_retry_after_asks(providers, fast_retries, provider):
    started = time.monotonic()
    events = await collect(retries(provider, request_for(provider, "sandbox-fault:429x1")))
    elapsed = time.monotonic() - started
    (wait,) = [e for e in events if isinstance(e, Retrying)]
    # The sandbox sends retry-after-ms: 1000; the policy's own wait would be 10 ms.
    assert wait.delay == pytest.approx(1.0)
    assert wait.reason == "rate_limited"
    assert elapsed >= 1.0
    assert isinstance(events[-1], StreamEnd)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retry_after_beyond_the_cap_fails_at_once_saying_when(
    providers, fast_retries, provider
):
    fast_retries.LLM_RETRY_MAX_DELAY = 0.5
    seen, error = await failure(retries(provider, request_for(provider, "sandbox-fault:429")))
    assert isinstance(error, errors.RateLimited)
    assert seen == []  # no wait was taken (no Retrying event)
    assert "try again in 1 s" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_bad_request_is_not_retried_and_shows_the_providers_reason(
    providers, fast_retries, provider
):
    request = request_for(provider, "hello", max_tokens=10_000_000)
    seen, error = await failure(retries(provider, request))
    assert isinstance(error, errors.Rejected)
    assert seen == []
    assert error.status == 400
    assert error.code == "provider_rejected"
    assert "max_" in error.message  # the provider's reason, in words
    assert "Error code" not in error.message
    assert "Traceback" not in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_unknown_model_is_not_retried(providers, fast_retries, provider):
    request = request_for(provider, "hello")
    request = ChatRequest(model="no-such-model", messages=request.messages, max_tokens=10)
    seen, error = await failure(retries(provider, request))
    assert isinstance(error, errors.Rejected)
    assert seen == []
    assert error.status == 404


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_refused_key_is_not_retried(providers, fast_retries, provider):
    # The sandbox answers 401 to a request without a key; the SDK always sends one, so drop it.
    if provider == "anthropic":
        blank = {"Authorization": anthropic.Omit(), "x-api-key": ""}
    else:
        blank = {"Authorization": openai.Omit()}
    seen, error = await failure(retries(provider, request_for(provider, "hi", extra_headers=blank)))
    assert isinstance(error, errors.AuthenticationFailed)
    assert seen == []
    assert error.status == 401
    assert error.code == "provider_auth_failed"


class Scripted:
    """A provider that fails with the given errors in turn, then answers."""

    name = "anthropic"

    def __init__(self, *failures: errors.ProviderError) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def stream(self, request):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        yield TextDelta("ok")
        yield StreamEnd("end_turn", usage=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "refusal",
    [
        errors.AuthenticationFailed("no", status=403),
        errors.Rejected("no", status=413),
        errors.Rejected("no", status=422),
        errors.ContextTooLong("no", status=400),
    ],
)
async def test_client_errors_are_never_retried(fast_retries, refusal):
    provider = Scripted(refusal)
    with pytest.raises(type(refusal)):
        await collect(stream_with_retries(provider, request_for("anthropic", "x"), model_label="C"))
    assert provider.calls == 1


async def test_attempts_are_capped_and_the_last_error_says_how_many(fast_retries):
    provider = Scripted(*[errors.Unavailable("Claude is unavailable (HTTP 503).")] * 5)
    seen, error = await failure(
        stream_with_retries(provider, request_for("anthropic", "x"), model_label="Claude")
    )
    assert isinstance(error, errors.Unavailable)
    assert provider.calls == 4
    assert [e.attempt for e in seen] == [2, 3, 4]
    assert "tried 4 times" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_no_retry_once_text_has_reached_the_user(providers, fast_retries, provider):
    seen, error = await failure(retries(provider, request_for(provider, "sandbox-fault:error@3")))
    assert isinstance(error, errors.ProviderError)
    assert not any(isinstance(e, Retrying) for e in seen)
    assert len([e for e in seen if isinstance(e, TextDelta)]) == 3
    assert error.retryable is False
    usage = error.usage
    assert usage is not None
    assert usage.input_tokens > 0
    assert usage.output_tokens >= 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_error_before_the_first_token_is_retried(providers, fast_retries, provider):
    fast_retries.LLM_RETRY_ATTEMPTS = 2
    seen, _ = await failure(retries(provider, request_for(provider, "sandbox-fault:error@0")))
    assert len([e for e in seen if isinstance(e, Retrying)]) == 1
    assert not any(isinstance(e, TextDelta) for e in seen)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_hung_provider_times_out_before_the_first_token_and_is_retried(
    providers, fast_retries, provider
):
    fast_retries.LLM_FIRST_TOKEN_TIMEOUT = 0.3
    fast_retries.LLM_RETRY_ATTEMPTS = 2
    started = time.monotonic()
    seen, error = await failure(retries(provider, request_for(provider, "sandbox-fault:hang")))
    assert isinstance(error, errors.ProviderTimeout)
    assert 0.6 <= time.monotonic() - started < 3
    assert [(e.attempt, e.reason) for e in seen] == [(2, "provider_timeout")]
    assert "tried 2 times" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_silence_mid_answer_is_an_idle_timeout_and_not_retried(
    providers, fast_retries, provider
):
    fast_retries.LLM_IDLE_TIMEOUT = 0.3
    seen, error = await failure(retries(provider, request_for(provider, "sandbox-fault:slow")))
    assert isinstance(error, errors.ProviderTimeout)
    assert [type(e) for e in seen] == [TextDelta]
    assert "stopped sending" in error.message
    assert error.usage is not None
    assert error.usage.output_tokens >= 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_deadline_bounds_all_attempts_and_waits(providers, fast_retries, provider):
    fast_retries.LLM_RETRY_ATTEMPTS = 10
    fast_retries.LLM_RETRY_BASE_DELAY = 0.2
    fast_retries.LLM_RETRY_JITTER = 0.0
    fast_retries.LLM_RETRY_DEADLINE = 0.5
    started = time.monotonic()
    seen, error = await failure(retries(provider, request_for(provider, "sandbox-fault:529x9")))
    assert isinstance(error, errors.Overloaded)
    # Waits of 0.2 then 0.4 s: the second would end past the deadline, so it is not taken.
    assert [e.delay for e in seen] == [0.2]
    # Loose on purpose (a shared 2-core machine): ten attempts would take seconds.
    assert time.monotonic() - started < 3
    assert "in 0.5 s" in error.message


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_deadline_cuts_a_hang_shorter_than_the_first_token_timeout(
    providers, fast_retries, provider
):
    fast_retries.LLM_FIRST_TOKEN_TIMEOUT = 10.0
    fast_retries.LLM_RETRY_DEADLINE = 0.4
    started = time.monotonic()
    _, error = await failure(retries(provider, request_for(provider, "sandbox-fault:hang")))
    assert isinstance(error, errors.ProviderTimeout)
    assert time.monotonic() - started < 5  # the first-token timeout alone would take 10 s
    assert "within 0.4 s" in error.message
