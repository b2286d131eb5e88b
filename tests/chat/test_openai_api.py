"""The OpenAI-compatible door end to end: the official openai SDK against a live Daphne,
which drives the sandbox through the real pipeline, budgets and ledger."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from budgets.models import Plan, Quota, UsageRecord
from chat.models import Conversation, Message
from chat.services.api_keys import api_key_create, api_key_revoke

MODEL = "gpt-5-mini"
CLAUDE = "claude-sonnet-4-6"


@pytest.fixture
def api_key(daphne_server, user) -> str:
    return api_key_create(user_id=user.id, name="tests")[1]


@pytest.fixture
def client(daphne_server, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=daphne_server.url + "/v1", api_key=api_key, max_retries=0)


@pytest.fixture
def aclient(daphne_server, api_key) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=daphne_server.url + "/v1", api_key=api_key, max_retries=0)


def set_plan(user, **fields) -> Plan:
    fields.setdefault("requests_per_minute", 1000)
    fields.setdefault("concurrent_streams", 100)
    plan = Plan.objects.create(name=f"test-{user.id}", **fields)
    Quota.objects.update_or_create(user=user, defaults={"plan": plan})
    return plan


def post(daphne_server, api_key: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api_key}", **kwargs.pop("headers", {})}
    return httpx.post(
        daphne_server.url + "/v1/chat/completions", headers=headers, timeout=30, **kwargs
    )


def test_sync_completion_is_stored_as_a_conversation_with_its_history(client, user):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Remember the number 7"},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "sandbox-reply:5 what was it?"},
        ],
        max_completion_tokens=100,
        temperature=0.5,
        user="end-user-1",
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content
    conversation = Conversation.objects.get(user=user)
    assert conversation.system_prompt == "Be brief."
    assert conversation.title == "Remember the number 7"
    rows = list(conversation.messages.values_list("role", "content", "status"))
    assert rows[:3] == [
        ("user", "Remember the number 7", "done"),
        ("assistant", "Noted.", "done"),
        ("user", "sandbox-reply:5 what was it?", "done"),
    ]
    assert rows[3] == ("assistant", completion.choices[0].message.content, "done")
    record = UsageRecord.objects.get(user=user)
    assert completion.usage.completion_tokens == record.output_tokens == 5
    assert round(completion.usage.model_extra["cost_usd"] * 1_000_000) == record.cost_micros


def test_sync_stream_ends_with_usage_equal_to_the_ledger(client, user):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "sandbox-reply:8 stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    record = UsageRecord.objects.get(user=user)
    answer = Message.objects.get(conversation__user=user, role="assistant")
    assert answer.content == text
    assert answer.status == "done"
    assert usage.completion_tokens == record.output_tokens == 8
    assert usage.prompt_tokens == record.input_tokens + record.cache_read_tokens + (
        record.cache_write_tokens
    )
    assert round(usage.model_extra["cost_usd"] * 1_000_000) == record.cost_micros > 0


async def test_async_client_streams_and_completes_claude_too(aclient):
    stream = await aclient.chat.completions.create(
        model=CLAUDE,
        messages=[{"role": "user", "content": "sandbox-reply:4 hello claude"}],
        stream=True,
        max_tokens=50,
    )
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts)
    completion = await aclient.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "sandbox-reply:3 again"}]
    )
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == 3


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "sandbox-reply:40 long"}],
        max_tokens=3,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


def test_models_lists_what_the_plan_allows(client, user):
    ids = {model.id for model in client.models.list()}
    assert {MODEL, CLAUDE} <= ids
    set_plan(user, daily_tokens=100_000, allowed_models=MODEL)
    assert [model.id for model in client.models.list()] == [MODEL]


def test_models_retrieve_returns_an_allowed_model_and_404s_the_rest(client, user):
    model = client.models.retrieve(MODEL)
    assert (model.id, model.object, model.owned_by) == (MODEL, "model", "openai")
    assert client.models.retrieve(CLAUDE).owned_by == "anthropic"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.models.retrieve("gpt-nope")
    assert unknown.value.code == "model_not_found"
    assert unknown.value.body["type"] == "invalid_request_error"
    assert "gpt-nope" in unknown.value.message
    set_plan(user, daily_tokens=100_000, allowed_models=MODEL)
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve(CLAUDE)
    assert refused.value.code == "model_not_found"
    assert client.models.retrieve(MODEL).id == MODEL


def test_models_retrieve_needs_a_key(daphne_server):
    response = httpx.get(daphne_server.url + f"/v1/models/{MODEL}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_budget_refusal_is_429_with_retry_after_and_leaves_nothing(client, user):
    set_plan(user, daily_tokens=5)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "sandbox-reply:5 hi"}]
        )
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert refused.value.code == "budget_exceeded"
    assert not Conversation.objects.exists()
    assert not UsageRecord.objects.exists()


def test_model_outside_the_plan_is_404(client, user):
    set_plan(user, daily_tokens=100_000, allowed_models=MODEL)
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "model_not_found"
    assert not Conversation.objects.exists()


def test_unknown_model_is_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(
            model="gpt-nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "model_not_found"
    assert refused.value.body["type"] == "invalid_request_error"
    assert not Conversation.objects.exists()


def test_bad_and_revoked_keys_are_401(daphne_server, user, client):
    bad = openai.OpenAI(
        base_url=daphne_server.url + "/v1", api_key="sk-chat-" + "x" * 43, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    key, raw = api_key_create(user_id=user.id, name="old")
    api_key_revoke(user_id=user.id, key_id=key.pk)
    revoked = openai.OpenAI(base_url=daphne_server.url + "/v1", api_key=raw, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        revoked.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert refused.value.code == "invalid_api_key"
    response = httpx.get(daphne_server.url + "/v1/models")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[]", None),
        (b'{"model": "gpt-5-mini", "messages": []}', "messages"),
        (b'{"model": "gpt-5-mini", "messages": "hi"}', "messages"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (
            b'{"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hi"}, '
            b'{"role": "assistant", "content": "yo"}]}',
            "messages",
        ),
        (
            b'{"model": "gpt-5-mini", "max_tokens": "9", '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "max_tokens",
        ),
        (
            b'{"model": "gpt-5-mini", "stream": 1, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "stream",
        ),
        (
            b'{"model": "gpt-5-mini", "stop": ["a", "b", "c", "d", "e"], '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "stop",
        ),
        (
            b'{"model": "gpt-5-mini", "stop": ["END", ""], '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "stop",
        ),
        (
            b'{"model": "gpt-5-mini", "stop": 5, "messages": [{"role": "user", "content": "hi"}]}',
            "stop",
        ),
        (
            b'{"model": "gpt-5-mini", "stop": [["END"]], '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            "stop",
        ),
        (b'{"model": "gpt-5-mini", "messages": [{"role": "user", "content": "  "}]}', None),
    ],
)
def test_malformed_requests_are_400_and_store_nothing(daphne_server, api_key, body, param):
    response = post(daphne_server, api_key, content=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    if param:
        assert error["param"] == param
    assert not Conversation.objects.exists()


# The sandbox's reply starts 'You asked: "<question>"\n\nThis is the sandbox answering as ...'.
CUT = "sandbox answering"


def test_stop_sequence_ends_the_answer_before_it(client, user):
    question = "sandbox-reply:60 where does it stop?"
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question}], stop=[CUT, "NEVER"]
    )
    content = completion.choices[0].message.content
    assert content == f'You asked: "{question}"\n\nThis is the '
    assert completion.choices[0].finish_reason == "stop"
    assert 0 < completion.usage.completion_tokens < 60
    answer = Message.objects.get(conversation__user=user, role="assistant")
    assert (answer.content, answer.status) == (content, "done")
    assert UsageRecord.objects.get(user=user).output_tokens == completion.usage.completion_tokens


def test_stop_sequence_as_a_string_cuts_a_stream(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "sandbox-reply:60 streamed"}],
        stop=CUT,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.endswith("This is the ")
    assert CUT not in text
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_stop_sequence_reaches_claude_as_stop_sequences(aclient, user):
    completion = await aclient.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "sandbox-reply:60 claude"}], stop=[CUT]
    )
    assert completion.choices[0].message.content.endswith("This is the ")
    assert completion.choices[0].finish_reason == "stop"
    answer = await Message.objects.aget(conversation__user=user, role="assistant")
    assert answer.stop_reason == "stop_sequence"


def test_the_response_cache_tells_answers_with_different_stops_apart(client):
    ask = {"model": MODEL, "temperature": 0, "messages": [{"role": "user", "content": "Same"}]}
    whole = client.chat.completions.create(**ask).choices[0].message.content
    cut = client.chat.completions.create(**ask, stop=[CUT]).choices[0].message.content
    again = client.chat.completions.create(**ask, stop=[CUT])
    assert CUT in whole
    assert cut == whole[: whole.index(CUT)]
    assert again.choices[0].message.content == cut
    assert again.usage.model_extra["cost_usd"] == 0  # answered from the cache


def test_oversized_body_is_refused_from_its_content_length(daphne_server, api_key, settings):
    big = b'{"model": "gpt-5-mini", "messages": [{"role": "user", "content": "' + (
        b"a" * (settings.CHAT_API_MAX_BODY_BYTES + 10) + b'"}]}'
    )
    response = post(daphne_server, api_key, content=big)
    assert response.status_code == 400
    assert "limit" in response.json()["error"]["message"]
    assert not Conversation.objects.exists()


def test_fault_mid_stream_becomes_an_error_chunk_then_done(daphne_server, api_key, client, user):
    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "sandbox-reply:20 sandbox-fault:error@5"}],
        stream=True,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert '"error"' in lines[-2]
    deltas = [line for line in lines if '"content"' in line]
    assert len(deltas) > 1  # some text arrived before the fault
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "sandbox-reply:20 sandbox-fault:error@5 2"}],
            stream=True,
        ):
            pass
    statuses = set(Message.objects.filter(role="assistant").values_list("status", flat=True))
    assert statuses == {"interrupted"}


def test_client_going_away_stops_the_answer_and_settles_it(client, user):
    import time

    with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "sandbox-reply:300 a long one"}],
        stream=True,
    ) as response:
        lines = response.iter_lines()
        for line in lines:
            if '"content":"' in line and '"role"' not in line:
                break  # the answer is under way: hang up
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record = UsageRecord.objects.filter(user=user).first()
        if record is not None:
            break
        time.sleep(0.05)
    assert record is not None
    assert record.outcome == "stopped"
    answer = Message.objects.get(role="assistant")
    assert answer.status == "stopped"
    assert 0 < record.output_tokens < 300
