"""The Anthropic Messages emulation, driven by the real anthropic SDK."""

from __future__ import annotations

import anthropic
import pytest

from sandbox import tokens
from tests.sandbox.support import ANTHROPIC_MODEL

USER = [{"role": "user", "content": "What is the capital of France?"}]


def test_message_reports_honest_usage_and_end_turn(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER)

    assert message.id.startswith("msg_")
    assert message.model == ANTHROPIC_MODEL
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    text = message.content[0].text
    assert 60 <= message.usage.output_tokens <= 150
    assert message.usage.output_tokens == tokens.count(text)
    assert (
        message.usage.input_tokens
        == claude.messages.count_tokens(model=ANTHROPIC_MODEL, messages=USER).input_tokens
    )
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_reply_restates_the_question_verbatim_including_html(claude: anthropic.Anthropic) -> None:
    question = "Is <script>alert('x')</script> & <b>bold</b> safe?"
    message = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=500, messages=[{"role": "user", "content": question}]
    )

    text = message.content[0].text
    assert question in text
    assert ANTHROPIC_MODEL in text
    assert "1 message" in text


def test_replies_are_deterministic_for_a_prompt(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=500, messages=USER)
    second = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=500, messages=USER)
    other = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=500, messages=[{"role": "user", "content": "Why?"}]
    )

    assert first.content[0].text == second.content[0].text
    assert first.content[0].text != other.content[0].text


def test_stream_events_come_in_the_documented_order(claude: anthropic.Anthropic) -> None:
    with claude.messages.with_streaming_response.create(
        model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER, stream=True
    ) as raw:
        names = [line[7:] for line in raw.iter_lines() if line.startswith("event: ")]

    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}


def test_stream_sends_one_token_per_delta_and_cumulative_usage(
    claude: anthropic.Anthropic,
) -> None:
    with claude.messages.stream(model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER) as stream:
        events = list(stream)
        final = stream.get_final_message()

    start = next(e for e in events if e.type == "message_start")
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    message_delta = next(e for e in events if e.type == "message_delta")
    assert start.message.usage.output_tokens == 1
    assert start.message.usage.input_tokens == final.usage.input_tokens
    assert start.message.usage.cache_creation is not None
    assert len(deltas) == final.usage.output_tokens == message_delta.usage.output_tokens
    assert all(len(tokens.encode(d)) == 1 for d in deltas)
    assert message_delta.delta.stop_reason == "end_turn"
    assert message_delta.delta.stop_sequence is None
    assert message_delta.usage.input_tokens == final.usage.input_tokens
    assert "".join(deltas) == final.content[0].text


def test_stream_and_non_stream_give_the_same_reply(claude: anthropic.Anthropic) -> None:
    whole = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER)
    with claude.messages.stream(model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER) as stream:
        streamed = stream.get_final_message()

    assert streamed.content[0].text == whole.content[0].text
    assert streamed.usage.output_tokens == whole.usage.output_tokens


def test_reply_is_cut_at_max_tokens(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model=ANTHROPIC_MODEL, max_tokens=7, messages=USER)
    with claude.messages.stream(model=ANTHROPIC_MODEL, max_tokens=7, messages=USER) as stream:
        deltas = [e for e in stream if e.type == "content_block_delta"]
        streamed = stream.get_final_message()

    assert message.stop_reason == streamed.stop_reason == "max_tokens"
    assert message.usage.output_tokens == streamed.usage.output_tokens == 7
    assert len(deltas) == 7


def test_reply_directive_sets_the_exact_length(claude: anthropic.Anthropic) -> None:
    content = "Write an essay. sandbox-reply:321"
    message = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=2000, messages=[{"role": "user", "content": content}]
    )
    capped = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=100, messages=[{"role": "user", "content": content}]
    )

    assert message.usage.output_tokens == 321
    assert message.stop_reason == "end_turn"
    assert capped.usage.output_tokens == 100
    assert capped.stop_reason == "max_tokens"


def test_reply_header_sets_the_exact_length(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=2000,
        messages=USER,
        extra_headers={"x-sandbox-reply-tokens": "3"},
    )

    assert message.usage.output_tokens == 3


def test_stop_sequence_ends_the_reply(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER, stop_sequences=["sandbox answering"]
    )

    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "sandbox answering"
    assert message.content[0].text.endswith("This is the ")


def test_system_and_blocks_are_counted(claude: anthropic.Anthropic) -> None:
    plain = claude.messages.count_tokens(model=ANTHROPIC_MODEL, messages=USER).input_tokens
    with_system = claude.messages.count_tokens(
        model=ANTHROPIC_MODEL,
        system=[{"type": "text", "text": "You are terse. " * 50}],
        messages=[{"role": "user", "content": [{"type": "text", "text": USER[0]["content"]}]}],
    ).input_tokens

    assert plain > 0
    assert with_system >= plain + 150


def test_models_list_has_the_anthropic_shape(claude: anthropic.Anthropic) -> None:
    models = list(claude.models.list(limit=5))
    first_page = claude.models.list(limit=5)

    ids = [m.id for m in models]
    assert {"claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5-20251001"} <= set(ids)
    assert {"claude-fable-5-2", "claude-opus-4-8"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert all(m.type == "model" and m.display_name and m.created_at for m in models)
    assert first_page.has_more is True
    assert first_page.first_id == ids[0]
    assert claude.models.retrieve("claude-opus-4-6").display_name == "Claude Opus 4.6"


async def test_async_client_streams_and_creates(async_claude: anthropic.AsyncAnthropic) -> None:
    message = await async_claude.messages.create(
        model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER
    )
    async with async_claude.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=1000, messages=USER
    ) as stream:
        text = "".join([t async for t in stream.text_stream])

    assert text == message.content[0].text
    await async_claude.close()


@pytest.mark.parametrize(
    "text",
    ["héllo wörld", "日本語のテキストです", "emoji 🎉🧪👩‍💻 mix", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀𓀁 鬱龘 ꙮ"],
)
def test_stream_deltas_are_valid_utf8(claude: anthropic.Anthropic, text: str) -> None:
    with claude.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=1000, messages=[{"role": "user", "content": text}]
    ) as stream:
        deltas = [e.delta.text for e in stream if e.type == "content_block_delta"]

    assert all(d and "\ufffd" not in d for d in deltas)
    assert text in "".join(deltas)


def test_tokens_splitting_a_character_share_one_delta(claude: anthropic.Anthropic) -> None:
    text = "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀𓀁 鬱龘 ꙮ"
    with claude.messages.stream(
        model=ANTHROPIC_MODEL, max_tokens=1000, messages=[{"role": "user", "content": text}]
    ) as stream:
        deltas = [e.delta.text for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()

    assert len(deltas) < final.usage.output_tokens
    assert "".join(deltas) == final.content[0].text
