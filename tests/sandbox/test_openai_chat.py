"""The OpenAI Chat Completions emulation, driven by the real openai SDK."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx2
import openai
import pytest

from sandbox import tokens
from sandbox.server import SandboxServer
from tests.sandbox.support import OPENAI_MODEL

USER = [{"role": "user", "content": "What is the capital of France?"}]
DOCUMENT = " ".join(f"Fact number {i} is about the sandbox." for i in range(250))


@pytest.fixture(scope="module")
def small_sandbox() -> Iterator[SandboxServer]:
    """A sandbox whose models all have a 1000-token context window."""
    with SandboxServer(tokens_per_second=2000.0, ttft_ms=0, max_context=1000) as server:
        yield server


def _chat_tokens(messages: list[dict[str, str]]) -> int:
    # OpenAI's documented chat format: 3 per message, role, content, 1 + name, 3 priming.
    total = 3
    for message in messages:
        total += 3 + tokens.count(message["role"]) + tokens.count(message["content"])
        if "name" in message:
            total += 1 + tokens.count(message["name"])
    return total


def test_completion_counts_prompt_tokens_with_the_chat_format(gpt: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi there", "name": "alice"},
        *USER,
    ]
    completion = gpt.chat.completions.create(model=OPENAI_MODEL, messages=messages)

    usage = completion.usage
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.role == "assistant"
    assert usage.prompt_tokens == _chat_tokens(messages)
    assert usage.completion_tokens == tokens.count(completion.choices[0].message.content)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0


def test_reply_restates_the_question_and_is_deterministic(gpt: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Is <img src=x onerror=alert(1)> inert?"}]
    first = gpt.chat.completions.create(model=OPENAI_MODEL, messages=question)
    second = gpt.chat.completions.create(model=OPENAI_MODEL, messages=question)

    assert question[0]["content"] in first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content


def test_stream_chunks_follow_openai_order_with_usage_last(gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(
        model=OPENAI_MODEL, messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    first, *middle, finish, usage_chunk = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert all(len(c.choices) == 1 and c.choices[0].delta.content for c in middle)
    assert all(len(tokens.encode(c.choices[0].delta.content)) == 1 for c in middle)
    assert all(c.usage is None for c in [first, *middle, finish])
    assert finish.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == len(middle)
    assert usage_chunk.usage.prompt_tokens == _chat_tokens(USER)


def test_stream_ends_with_done_and_omits_usage_unless_asked(sandbox: SandboxServer) -> None:
    response = httpx2.post(
        sandbox.base_url + "/v1/chat/completions",
        json={"model": OPENAI_MODEL, "messages": USER, "stream": True},
        headers={"authorization": "Bearer sk"},
    )

    lines = [line for line in response.text.split("\n\n") if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    assert '"usage"' not in response.text


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_reply_is_cut_at_the_token_cap(gpt: openai.OpenAI, field: str) -> None:
    completion = gpt.chat.completions.create(model=OPENAI_MODEL, messages=USER, **{field: 5})
    chunks = list(
        gpt.chat.completions.create(
            model=OPENAI_MODEL,
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
            **{field: 5},
        )
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 5


def test_reply_directive_sets_the_exact_length(gpt: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Tell me more. sandbox-reply:250"}]
    completion = gpt.chat.completions.create(model=OPENAI_MODEL, messages=messages)

    assert completion.usage.completion_tokens == 250
    assert completion.choices[0].finish_reason == "stop"


async def test_async_client_streams_the_same_text(async_gpt: openai.AsyncOpenAI) -> None:
    whole = await async_gpt.chat.completions.create(model=OPENAI_MODEL, messages=USER)
    stream = await async_gpt.chat.completions.create(model=OPENAI_MODEL, messages=USER, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert text == whole.choices[0].message.content
    await async_gpt.close()


def test_models_list_has_the_openai_shape(gpt: openai.OpenAI) -> None:
    ids = [m.id for m in gpt.models.list()]

    assert {"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4.1", "gpt-4.1-mini", "gpt-4o"} <= set(ids)
    assert gpt.models.retrieve("gpt-4o").owned_by == "openai"


def test_missing_key_is_refused_with_invalid_api_key(sandbox: SandboxServer) -> None:
    response = httpx2.post(
        sandbox.base_url + "/v1/chat/completions", json={"model": OPENAI_MODEL, "messages": USER}
    )

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["message"].startswith("Incorrect API key provided")


def test_unknown_model_is_not_found(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        gpt.chat.completions.create(model="claude-sonnet-4-6", messages=USER)

    assert caught.value.code == "model_not_found"


def test_messages_beyond_the_context_window_are_refused(small_sandbox: SandboxServer) -> None:
    client = openai.OpenAI(api_key="sk", base_url=small_sandbox.base_url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "word " * 1200}]

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=OPENAI_MODEL, messages=messages)

    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "messages"
    assert caught.value.body["message"] == (
        "This model's maximum context length is 1000 tokens. However, your messages resulted in "
        f"{_chat_tokens(messages)} tokens. Please reduce the length of the messages."
    )


def test_without_a_cap_the_reply_fits_the_window(small_sandbox: SandboxServer) -> None:
    client = openai.OpenAI(api_key="sk", base_url=small_sandbox.base_url + "/v1", max_retries=0)
    messages = [{"role": "user", "content": "word " * 940 + "sandbox-reply:100"}]

    completion = client.chat.completions.create(model=OPENAI_MODEL, messages=messages)

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.total_tokens == 1000


def test_malformed_json_is_a_400_in_openai_shape(sandbox: SandboxServer) -> None:
    response = httpx2.post(
        sandbox.base_url + "/v1/chat/completions",
        content=b"{oops",
        headers={"authorization": "Bearer sk", "content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "could not parse the JSON body" in response.json()["error"]["message"]


def test_repeated_prefix_reports_cached_tokens_in_128_steps(gpt: openai.OpenAI) -> None:
    system = {"role": "system", "content": DOCUMENT}

    def ask(question: str) -> openai.types.CompletionUsage:
        messages = [system, {"role": "user", "content": question}]
        return gpt.chat.completions.create(model=OPENAI_MODEL, messages=messages).usage

    first, second = ask("First?"), ask("Second, a different question?")

    assert first.prompt_tokens >= 1024
    assert first.prompt_tokens_details.cached_tokens == 0
    cached = second.prompt_tokens_details.cached_tokens
    assert cached >= 1024
    assert (cached - 1024) % 128 == 0
    assert second.prompt_tokens - 128 < cached <= second.prompt_tokens
    assert cached <= tokens.count(DOCUMENT) + 10


def test_short_prompts_are_never_cached(gpt: openai.OpenAI) -> None:
    gpt.chat.completions.create(model=OPENAI_MODEL, messages=USER)
    again = gpt.chat.completions.create(model=OPENAI_MODEL, messages=USER)

    assert again.usage.prompt_tokens_details.cached_tokens == 0


def test_openai_cache_is_per_key_and_reported_in_the_usage_chunk(
    gpt: openai.OpenAI, sandbox: SandboxServer
) -> None:
    messages = [{"role": "user", "content": DOCUMENT}]
    gpt.chat.completions.create(model=OPENAI_MODEL, messages=messages, prompt_cache_key="conv-1")
    chunks = list(
        gpt.chat.completions.create(
            model=OPENAI_MODEL,
            messages=messages,
            prompt_cache_key="conv-1",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    other = openai.OpenAI(
        api_key=f"sk-{uuid.uuid4().hex}", base_url=sandbox.base_url + "/v1", max_retries=0
    )
    for_other = other.chat.completions.create(
        model=OPENAI_MODEL, messages=messages, prompt_cache_key="conv-1"
    )

    assert chunks[-1].usage.prompt_tokens_details.cached_tokens >= 1024
    assert for_other.usage.prompt_tokens_details.cached_tokens == 0
