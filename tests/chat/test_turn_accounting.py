"""The pipeline with budgets, retries, caches and the usage ledger, against the sandbox."""

from __future__ import annotations

import asyncio

import pytest

from budgets.models import Plan, Quota, UsageRecord
from budgets.services import budget_state
from chat import errors
from chat.models import Conversation, Message
from chat.providers import catalog
from chat.services import accounting
from chat.services.turns import Delta, Failed, Finished, Notice, Retrying, Started, run_turn

pytestmark = pytest.mark.django_db(transaction=True)


async def collect(**kwargs):
    return [event async for event in run_turn(**kwargs)]


@pytest.fixture
def fast_retries(settings):
    settings.LLM_RETRY_BASE_DELAY = 0.01
    settings.LLM_RETRY_JITTER = 0.0
    return settings


async def set_plan(user, **fields) -> None:
    fields.setdefault("requests_per_minute", 1000)
    fields.setdefault("concurrent_streams", 100)
    fields.setdefault("max_output_tokens", 64_000)
    plan = await Plan.objects.acreate(name=f"test-{user.id}", **fields)
    await Quota.objects.aupdate_or_create(user=user, defaults={"plan": plan})


async def test_every_call_writes_a_ledger_row_matching_the_message_and_the_meter(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="Count me", model="gpt-5-mini"
    )
    finished = events[-1]
    assert isinstance(finished, Finished)
    model, _ = catalog.resolve("gpt-5-mini")
    assert finished.cost_micros == accounting.call_cost(model, finished.usage) > 0
    record = await UsageRecord.objects.aget(user=user)
    assert record.outcome == "finished"
    assert record.message_id == finished.message_id
    assert record.conversation_id == conversation.id
    assert record.output_tokens == finished.usage.output_tokens
    assert record.cost_micros == finished.cost_micros
    answer = await Message.objects.aget(pk=finished.message_id)
    assert answer.cost_micros == finished.cost_micros
    state = await budget_state(user_id=user.id)
    assert state.tokens_used == finished.usage.total_tokens
    assert state.cost_used_micros == finished.cost_micros
    assert state.reserved_tokens == 0


async def test_a_refused_budget_stores_nothing_and_calls_no_provider(providers, user):
    await set_plan(user, daily_tokens=5)
    conversation = await Conversation.objects.acreate(user=user)
    with pytest.raises(errors.Refused) as refused:
        await collect(user_id=user.id, conversation_id=conversation.id, text="Too much")
    assert refused.value.code == "budget_exceeded"
    assert "resets" in refused.value.message
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert await UsageRecord.objects.filter(user=user).acount() == 0


async def test_a_model_outside_the_plan_is_refused(providers, user):
    await set_plan(user, daily_tokens=100_000, allowed_models="gpt-5-mini")
    conversation = await Conversation.objects.acreate(user=user)
    with pytest.raises(errors.Refused) as refused:
        await collect(
            user_id=user.id, conversation_id=conversation.id, text="hi", model="claude-sonnet-4-6"
        )
    assert refused.value.code == "model_not_allowed"


async def test_shrink_to_fit_tells_the_person_and_sends_fewer_tokens(providers, user, settings):
    settings.BUDGETS_MIN_REPLY_TOKENS = 50
    await set_plan(user, daily_tokens=300)
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id,
        conversation_id=conversation.id,
        text="sandbox-reply:900 go",
        model="gpt-5-mini",
        max_tokens=1024,
    )
    notices = [e for e in events if isinstance(e, Notice)]
    assert notices
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert finished.stop_reason == "length"
    assert finished.usage.total_tokens <= 300


async def test_retry_waits_are_events_and_recorded(providers, user, fast_retries):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id,
        conversation_id=conversation.id,
        text="sandbox-fault:529x2 hello",
        model="claude-sonnet-4-6",
    )
    waits = [e for e in events if isinstance(e, Retrying)]
    assert [(w.attempt, w.max_attempts) for w in waits] == [(2, 4), (3, 4)]
    assert waits[0].message.startswith("Claude is overloaded, retrying in")
    assert isinstance(events[-1], Finished)
    assert events[-1].retries == 2
    record = await UsageRecord.objects.aget(user=user)
    assert record.retries == 2


async def test_a_failure_before_any_token_charges_nothing(providers, user, fast_retries):
    fast_retries.LLM_RETRY_ATTEMPTS = 1
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:500"
    )
    assert isinstance(events[-1], Failed)
    record = await UsageRecord.objects.aget(user=user)
    assert (record.outcome, record.cost_micros, record.output_tokens) == ("failed", 0, 0)
    state = await budget_state(user_id=user.id)
    assert state.tokens_used == 0
    assert state.reserved_tokens == 0


async def test_a_mid_stream_failure_is_charged_for_what_was_used(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="sandbox-fault:error@6"
    )
    failed = events[-1]
    assert isinstance(failed, Failed)
    assert failed.usage is not None
    assert failed.usage.output_tokens >= 6
    record = await UsageRecord.objects.aget(user=user)
    assert record.outcome == "interrupted"
    assert record.output_tokens == failed.usage.output_tokens
    assert record.cost_micros == failed.cost_micros > 0


async def test_stopping_settles_what_was_used_and_frees_the_rest(providers, user):
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
    record = await UsageRecord.objects.aget(user=user)
    assert record.outcome == "stopped"
    assert record.output_tokens >= 1
    assert record.input_tokens > 0
    state = await budget_state(user_id=user.id)
    assert state.reserved_tokens == 0
    assert state.tokens_used == record.input_tokens + record.output_tokens


async def test_identical_deterministic_requests_are_answered_from_the_cache(providers, user):
    first_conversation = await Conversation.objects.acreate(user=user)
    second_conversation = await Conversation.objects.acreate(user=user)
    kwargs = {"user_id": user.id, "text": "Same question", "model": "gpt-5-mini", "temperature": 0}
    first = (await collect(conversation_id=first_conversation.id, **kwargs))[-1]
    second = (await collect(conversation_id=second_conversation.id, **kwargs))[-1]
    assert not first.cache_hit
    assert second.cache_hit
    assert second.content == first.content
    assert second.cost_micros == 0
    assert second.saved_micros == first.cost_micros
    outcomes = [r.outcome async for r in UsageRecord.objects.filter(user=user).order_by("id")]
    assert outcomes == ["finished", "cache_hit"]


async def test_regenerate_bypasses_the_response_cache(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    kwargs = {"user_id": user.id, "conversation_id": conversation.id, "temperature": 0}
    await collect(text="Cache me", **kwargs)
    again = (await collect(mode="regenerate", **kwargs))[-1]
    assert not again.cache_hit
    assert again.cost_micros > 0


async def test_concurrent_identical_requests_make_one_provider_call(providers, user):
    await set_plan(user, daily_tokens=1_000_000)
    conversations = [await Conversation.objects.acreate(user=user) for _ in range(4)]
    results = await asyncio.gather(
        *(
            collect(
                user_id=user.id,
                conversation_id=c.id,
                text="sandbox-reply:60 together",
                temperature=0,
            )
            for c in conversations
        )
    )
    finished = [events[-1] for events in results]
    assert sum(not f.cache_hit for f in finished) == 1
    assert len({f.content for f in finished}) == 1
    assert await UsageRecord.objects.filter(user=user, outcome="finished").acount() == 1
    assert await UsageRecord.objects.filter(user=user, outcome="cache_hit").acount() == 3


async def test_answers_at_default_temperature_are_not_cached(providers, user):
    conversation = await Conversation.objects.acreate(user=user)
    kwargs = {"user_id": user.id, "conversation_id": conversation.id, "text": "Vary"}
    await collect(**kwargs)
    second = (await collect(**kwargs))[-1]
    assert not second.cache_hit


async def test_the_second_turn_of_a_long_conversation_reads_the_prompt_cache(providers, user):
    model, _ = catalog.resolve("claude-sonnet-4-6")
    long_instructions = "Follow the house style guide carefully. " * 300  # > 1024 tokens
    conversation = await Conversation.objects.acreate(user=user, system_prompt=long_instructions)
    kwargs = {"user_id": user.id, "conversation_id": conversation.id, "model": model.id}
    first = (await collect(text="First question", **kwargs))[-1]
    second = (await collect(text="Second question", **kwargs))[-1]
    assert first.usage.cache_write_tokens > 1024
    assert second.usage.cache_read_tokens >= first.usage.cache_write_tokens
    # The recorded cost is exactly the catalog's price of the cached usage...
    assert second.cost_micros == accounting.call_cost(model, second.usage)
    # ...lower than reading the same prompt uncached by exactly what the cache saved.
    from chat.providers.base import Usage

    uncached = Usage(
        input_tokens=second.usage.prompt_tokens, output_tokens=second.usage.output_tokens
    )
    premium = accounting.call_cost(model, second.usage) - accounting.call_cost(
        model,
        Usage(
            input_tokens=second.usage.input_tokens + second.usage.cache_read_tokens,
            cache_write_tokens=second.usage.cache_write_tokens,
            output_tokens=second.usage.output_tokens,
        ),
    )
    assert second.saved_micros == -premium > 0
    assert second.cost_micros < accounting.call_cost(model, uncached)


async def test_a_history_too_long_for_the_window_drops_the_oldest_turns(providers, user):
    await set_plan(user, daily_tokens=10_000_000)
    model, _ = catalog.resolve("gpt-4o-mini")
    conversation = await Conversation.objects.acreate(user=user)
    chunk = "history " * 5_000  # ~5,000 tokens each
    for index in range(40):  # ~200,000 tokens in all: more than the 128k window
        await Message.objects.acreate(
            conversation=conversation,
            role="user" if index % 2 == 0 else "assistant",
            content=f"{index} {chunk}",
        )
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="And now?", model=model.id
    )
    notices = [e for e in events if isinstance(e, Notice)]
    assert notices
    assert "oldest messages were left out" in notices[0].text
    finished = events[-1]
    assert isinstance(finished, Finished)  # the sandbox accepted it: it fits the window
    assert finished.usage.prompt_tokens + 1024 <= model.context_window
    assert isinstance(events[0], Started)
