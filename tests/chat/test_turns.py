"""The turn pipeline, driven against the sandbox through the real SDKs."""

from __future__ import annotations

import asyncio

import pytest

from chat import errors
from chat.models import Conversation, Message
from chat.services.turns import Delta, Failed, Finished, Started, run_turn

pytestmark = pytest.mark.django_db(transaction=True)

MODELS = ["claude-sonnet-4-6", "gpt-5-mini"]


async def collect(**kwargs):
    return [event async for event in run_turn(**kwargs)]


async def stored(conversation):
    return [m async for m in Message.objects.filter(conversation=conversation).order_by("id")]


@pytest.mark.parametrize("model", MODELS)
async def test_turn_streams_the_answer_and_stores_both_messages(providers, user, model):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="What is a budget?", model=model
    )
    started, *middle, finished = events
    assert isinstance(started, Started)
    assert isinstance(finished, Finished)
    deltas = [e.text for e in middle if isinstance(e, Delta)]
    assert len(deltas) > 10  # token by token
    assert finished.content == "".join(deltas)
    assert 'You asked: "What is a budget?"' in finished.content
    assert finished.stop_reason in {"end_turn", "stop"}
    assert finished.usage.input_tokens > 0
    assert finished.usage.output_tokens == len(deltas)

    user_message, answer = await stored(conversation)
    assert (user_message.role, user_message.content) == ("user", "What is a budget?")
    assert answer.role == "assistant"
    assert answer.status == Message.Status.DONE
    assert answer.content == finished.content
    assert answer.model == model
    assert answer.output_tokens == finished.usage.output_tokens
    assert answer.time_to_first_token_ms is not None
    await conversation.arefresh_from_db()
    assert conversation.title == "What is a budget?"


async def test_second_turn_sends_the_history(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    first = (await collect(user_id=user.id, conversation_id=conversation.id, text="One"))[-1]
    second = (await collect(user_id=user.id, conversation_id=conversation.id, text="Two"))[-1]
    assert "1 message," in first.content
    assert "3 messages," in second.content
    assert second.usage.input_tokens > first.usage.input_tokens


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "message_empty"), ("   \n ", "message_empty"), ("x" * 40_000, "message_too_long")],
)
async def test_bad_messages_are_refused_before_anything_is_stored(providers, user, text, code):
    conversation = await Conversation.objects.acreate(user=user)
    with pytest.raises(errors.InvalidInput) as refused:
        await collect(user_id=user.id, conversation_id=conversation.id, text=text)
    assert refused.value.code == code
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_another_users_conversation_is_not_found(providers, user, other_user):
    theirs = await Conversation.objects.acreate(user=other_user)
    with pytest.raises(errors.NotFound):
        await collect(user_id=user.id, conversation_id=theirs.id, text="hello")
    assert await Message.objects.filter(conversation=theirs).acount() == 0


async def test_unknown_model_is_refused_before_anything_is_stored(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    with pytest.raises(errors.NotFound) as refused:
        await collect(user_id=user.id, conversation_id=conversation.id, text="hi", model="gpt-nope")
    assert refused.value.code == "model_unavailable"
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_unconfigured_provider_is_refused(no_providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    with pytest.raises(errors.InvalidInput) as refused:
        await collect(
            user_id=user.id, conversation_id=conversation.id, text="hi", model="gpt-5-mini"
        )
    assert "OPENAI_API_KEY" in refused.value.message


@pytest.mark.parametrize(
    ("model", "fault", "code"),
    [
        ("claude-sonnet-4-6", "529", "provider_overloaded"),
        ("claude-sonnet-4-6", "429", "rate_limited"),
        ("gpt-5-mini", "503", "provider_unavailable"),
        ("gpt-5-mini", "429", "rate_limited"),
    ],
)
async def test_provider_failure_is_kept_as_a_failed_answer(providers, user, model, fault, code):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id,
        conversation_id=conversation.id,
        text=f"sandbox-fault:{fault} please",
        model=model,
    )
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.code == code
    assert failed.status == Message.Status.FAILED
    user_message, answer = await stored(conversation)
    assert user_message.content == f"sandbox-fault:{fault} please"
    assert answer.status == Message.Status.FAILED
    assert answer.error_code == code


@pytest.mark.parametrize("model", MODELS)
async def test_mid_stream_error_keeps_the_partial_answer_as_interrupted(providers, user, model):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:error@5", model=model
    )
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.status == Message.Status.INTERRUPTED
    deltas = [e.text for e in events if isinstance(e, Delta)]
    assert len(deltas) == 5
    _, answer = await stored(conversation)
    assert answer.status == Message.Status.INTERRUPTED
    assert answer.content == "".join(deltas)


@pytest.mark.parametrize("model", MODELS)
async def test_dropped_connection_keeps_the_partial_answer(providers, user, model):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:drop@4", model=model
    )
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.code == "stream_interrupted"
    assert failed.status == Message.Status.INTERRUPTED
    assert len([e for e in events if isinstance(e, Delta)]) == 4


@pytest.mark.parametrize(
    ("model", "reason"), [("claude-haiku-4-5", "max_tokens"), ("gpt-5", "length")]
)
async def test_max_tokens_is_always_sent_and_cuts_the_answer(providers, user, model, reason):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id,
        conversation_id=conversation.id,
        text="sandbox-reply:50 tell me more",
        model=model,
        max_tokens=7,
    )
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.stop_reason == reason
    assert finished.usage.output_tokens == 7


async def test_stopping_keeps_the_partial_answer(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    seen: list[str] = []

    async def consume() -> None:
        async for event in run_turn(
            user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:slow"
        ):
            if isinstance(event, Delta):
                seen.append(event.text)

    task = asyncio.create_task(consume())
    while not seen:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _, answer = await stored(conversation)
    assert answer.status == Message.Status.STOPPED
    assert answer.content == "".join(seen)


async def test_regenerate_replaces_the_last_answer(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    first = await collect(user_id=user.id, conversation_id=conversation.id, text="Once")
    old_answer_id = first[0].assistant_message_id
    again = await collect(user_id=user.id, conversation_id=conversation.id, mode="regenerate")
    started, finished = again[0], again[-1]
    assert started.mode == "regenerate"
    assert started.replaced_message_ids == (old_answer_id,)
    assert started.user_message_id == first[0].user_message_id
    assert isinstance(finished, Finished)
    messages = await stored(conversation)
    assert [(m.role, m.status) for m in messages] == [("user", "done"), ("assistant", "done")]
    assert messages[1].id == started.assistant_message_id != old_answer_id


async def test_regenerate_with_nothing_to_answer_is_refused(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    with pytest.raises(errors.InvalidInput):
        await collect(user_id=user.id, conversation_id=conversation.id, mode="regenerate")


@pytest.mark.parametrize("model", MODELS)
async def test_continue_streams_the_rest_into_the_interrupted_answer(providers, user, model):
    conversation = await Conversation.objects.acreate(user=user)
    broken = await collect(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:error@5", model=model
    )
    partial = broken[-1].content
    resumed = await collect(user_id=user.id, conversation_id=conversation.id, mode="continue")
    started, finished = resumed[0], resumed[-1]
    assert started.mode == "continue"
    assert started.assistant_message_id == broken[0].assistant_message_id
    assert started.prefix == partial
    assert isinstance(finished, Finished)
    assert finished.content.startswith(partial)
    assert len(finished.content) > len(partial)
    # Newer Claude models refuse an assistant prefill: the rest is asked for in a user turn.
    assert "Your previous answer was cut off" in finished.content
    messages = await stored(conversation)
    assert len(messages) == 2
    assert messages[1].status == Message.Status.DONE
    assert messages[1].content == finished.content


async def test_continue_is_refused_after_a_complete_answer(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    await collect(user_id=user.id, conversation_id=conversation.id, text="All done")
    with pytest.raises(errors.InvalidInput) as refused:
        await collect(user_id=user.id, conversation_id=conversation.id, mode="continue")
    assert "stopped or interrupted" in refused.value.message


@pytest.mark.parametrize("model", MODELS)
async def test_the_conversation_system_prompt_is_sent(providers, user, model):
    plain = await Conversation.objects.acreate(user=user)
    instructed = await Conversation.objects.acreate(
        user=user, system_prompt="You are a pirate. " * 20
    )
    without = (await collect(user_id=user.id, conversation_id=plain.id, text="Hi", model=model))[-1]
    with_system = (
        await collect(user_id=user.id, conversation_id=instructed.id, text="Hi", model=model)
    )[-1]
    assert with_system.usage.prompt_tokens >= without.usage.prompt_tokens + 80


async def test_closing_the_turn_after_it_finished_keeps_it_done(providers, user):
    """A door that stops reading once it has the answer must not mark it stopped."""
    conversation = await Conversation.objects.acreate(user=user)
    events = run_turn(user_id=user.id, conversation_id=conversation.id, text="Read to the end")
    async for event in events:
        if isinstance(event, Finished):
            break
    await events.aclose()
    _, answer = await stored(conversation)
    assert answer.status == Message.Status.DONE
