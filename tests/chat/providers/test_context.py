"""Fitting a conversation into the context window."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chat import errors
from chat.providers import tokens
from chat.providers.base import ChatMessage, ChatRequest, StreamEnd
from chat.providers.context import fit_to_context
from chat.providers.specs import spec
from sandbox.server import SandboxServer
from tests.chat.providers.conftest import ADAPTERS, collect


def conversation(turns: int, words: int = 100) -> tuple[ChatMessage, ...]:
    messages = []
    for i in range(turns):
        messages.append(ChatMessage("user", f"question {i} " + "lorem " * words))
        messages.append(ChatMessage("assistant", f"answer {i} " + "ipsum " * words))
    return (*messages, ChatMessage("user", "the latest question"))


@pytest.mark.parametrize("model_id", ["gpt-5-mini", "claude-sonnet-4-6"])
def test_oldest_turns_are_dropped_until_the_prompt_and_reply_fit(model_id):
    request = ChatRequest(model_id, conversation(10), max_tokens=500, system="Be kind.")
    full = tokens.local_prompt_tokens(spec(model_id), request)
    model = replace(spec(model_id), context_window=full + 500 - 700)  # 700 tokens too many
    fit = fit_to_context(model, request, full)
    kept = fit.request.messages
    assert fit.dropped_turns > 0
    assert fit.dropped_turns % 2 == 0
    assert kept == request.messages[fit.dropped_turns :]
    assert kept[0].role == "user"
    assert kept[-1].content == "the latest question"
    assert fit.request.system == "Be kind."
    assert fit.prompt_tokens + request.max_tokens <= model.context_window
    if model.provider == "openai":
        # Exact: and keeping one more turn would not have fitted.
        assert fit.prompt_tokens == tokens.local_prompt_tokens(model, fit.request)
        one_more = replace(request, messages=request.messages[fit.dropped_turns - 2 :])
        assert tokens.local_prompt_tokens(model, one_more) + 500 > model.context_window
    else:
        # The remainder errs high, never below the estimate of what is left.
        assert fit.prompt_tokens >= tokens.local_prompt_tokens(model, fit.request)


def test_a_request_that_fits_is_left_alone():
    request = ChatRequest("gpt-5", conversation(3), max_tokens=100)
    fit = fit_to_context(spec("gpt-5"), request, 1000)
    assert fit.request is request
    assert fit.dropped_turns == 0


def test_a_counter_function_recounts_the_trimmed_request():
    model = replace(spec("gpt-5"), context_window=1500)
    request = ChatRequest("gpt-5", conversation(6), max_tokens=200)
    calls = []

    def count(req: ChatRequest) -> int:
        calls.append(len(req.messages))
        return tokens.local_prompt_tokens(model, req)

    fit = fit_to_context(model, request, count)
    assert calls[0] == len(request.messages)
    assert len(calls) > 1
    assert fit.prompt_tokens == count(fit.request)
    assert fit.prompt_tokens + 200 <= 1500


def test_a_message_that_cannot_fit_is_refused_naming_both_numbers():
    model = spec("claude-sonnet-4-6")
    request = ChatRequest(model.id, (ChatMessage("user", "x"),), max_tokens=64_000)
    with pytest.raises(errors.ContextTooLong) as refused:
        fit_to_context(model, request, 186_000)
    assert refused.value.message == (
        "Your message and the system prompt need 250,000 tokens (64,000 of them for the reply); "
        "Claude Sonnet 4.6 takes 200,000 including the reply."
    )
    assert refused.value.code == "context_too_long"


def test_the_system_prompt_is_never_dropped_even_when_it_alone_overflows():
    model = replace(spec("gpt-5"), context_window=300)
    request = ChatRequest("gpt-5", conversation(2, 5), max_tokens=50, system="rules " * 400)
    with pytest.raises(errors.ContextTooLong):
        fit_to_context(model, request, tokens.local_prompt_tokens(model, request))


@pytest.mark.parametrize("model_id", ["gpt-5-mini", "claude-sonnet-4-6"])
async def test_the_fitted_request_is_accepted_by_a_provider_with_that_window(settings, model_id):
    request = ChatRequest(model_id, conversation(12), max_tokens=300)
    model = replace(spec(model_id), context_window=2000)
    fit = fit_to_context(model, request, tokens.local_prompt_tokens(model, request))
    assert fit.dropped_turns > 0
    with SandboxServer(tokens_per_second=4000.0, max_context=2000) as server:
        settings.ANTHROPIC_API_KEY = settings.OPENAI_API_KEY = "k"
        settings.ANTHROPIC_BASE_URL, settings.OPENAI_BASE_URL = (
            server.base_url,
            server.base_url + "/v1",
        )
        events = await collect(ADAPTERS[model.provider].stream(fit.request))
        with pytest.raises(errors.ProviderError):  # the untrimmed one is refused
            await collect(ADAPTERS[model.provider].stream(request))
    assert isinstance(events[-1], StreamEnd)
