"""Batch jobs end to end: the real SDKs against the sandbox, real Redis budgets, the ledger."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from asgiref.sync import sync_to_async

from budgets.models import Plan, Quota, UsageRecord
from budgets.services import budget_state
from chat import errors
from chat.models import BatchItem, BatchJob, Document
from chat.providers import catalog
from chat.providers.base import Usage
from chat.services import accounting, batch_runs
from chat.services.accounting import call_cost
from chat.services.batch_accounting import batch_priced, request_id_of
from chat.services.batch_runs import batch_job_step
from chat.services.batches import batch_job_cancel, batch_job_create
from tests.documents import make_document

pytestmark = pytest.mark.django_db(transaction=True)
CLAUDE = "claude-sonnet-4-6"
GPT = "gpt-4o-mini"


@pytest.fixture(autouse=True)
def fast_polls(settings):
    settings.CHAT_BATCH_POLL_SECONDS = 0.2
    settings.LLM_RETRY_BASE_DELAY = 0.01
    settings.LLM_RETRY_JITTER = 0.0


def set_plan(user, **fields) -> None:
    fields.setdefault("daily_tokens", 1_000_000)
    # Batch items must not need live-stream slots: keep the interactive limits tight.
    fields.setdefault("requests_per_minute", 1)
    fields.setdefault("concurrent_streams", 1)
    plan = Plan.objects.create(name=f"test-{user.id}", **fields)
    Quota.objects.update_or_create(user=user, defaults={"plan": plan})


create = sync_to_async(batch_job_create)
document = sync_to_async(make_document)
plan = sync_to_async(set_plan)


async def run_to_end(job_id, *, timeout: float = 15.0) -> list[float]:
    """Step the job as its task would, sleeping the waits it asks for; the waits."""
    waits: list[float] = []
    deadline = time.monotonic() + timeout
    while (wait := await batch_job_step(job_id=str(job_id))) is not None:
        assert time.monotonic() < deadline, "the job did not finish"
        waits.append(wait)
        await asyncio.sleep(min(wait, 0.2))
    return waits


async def items_of(job) -> list[BatchItem]:
    return [i async for i in BatchItem.objects.filter(job=job).order_by("position")]


async def test_claude_batch_runs_through_a_message_batch_at_half_price(providers, user):
    await plan(user)
    docs = [await document(user, f"doc{i}.txt", f"Document number {i}. " * 40) for i in range(3)]
    job = await create(
        user_id=user.id, model=CLAUDE, document_ids=[d.id for d in docs], instruction="Summarise."
    )

    model, _ = catalog.resolve(CLAUDE)
    wait = await batch_job_step(job_id=str(job.id))  # reserve every item, then submit
    assert wait == pytest.approx(0.2)
    await job.arefresh_from_db()
    assert job.provider_batch_id.startswith("msgbatch_")
    assert job.status == BatchJob.Status.RUNNING
    assert {i.status for i in await items_of(job)} == {BatchItem.Status.SUBMITTED}
    held = await budget_state(user_id=user.id)
    assert held.reserved_tokens > 0  # held per item while the provider works
    # The batch's three holds take none of the plan's one live stream (nor its one request a
    # minute): the person can still chat while it runs.
    chat = await accounting.reserve(
        user_id=user.id, team_id=None, model=model, prompt_tokens=10, max_tokens=10
    )
    await accounting.release(chat)

    waits = await run_to_end(job.id)
    assert waits  # it polled while the batch was in progress
    await job.arefresh_from_db()
    assert job.status == BatchJob.Status.ENDED
    assert (job.succeeded_count, job.errored_count, job.refused_count) == (3, 0, 0)
    items = await items_of(job)
    records = {r.request_id: r async for r in UsageRecord.objects.filter(user=user)}
    assert set(records) == {request_id_of(i) for i in items}
    for item in items:
        assert item.status == BatchItem.Status.SUCCEEDED
        assert f"doc{item.position}.txt" in item.output_text
        usage = Usage(
            item.input_tokens, item.cache_write_tokens, item.cache_read_tokens, item.output_tokens
        )
        assert usage.output_tokens > 0
        assert item.cost_micros == call_cost(batch_priced(model), usage)
        assert item.cost_micros * 2 == pytest.approx(call_cost(model, usage), abs=1)
        record = records[request_id_of(item)]
        assert record.batch is True
        assert record.outcome == "finished"
        assert (record.input_tokens, record.output_tokens) == (
            item.input_tokens,
            item.output_tokens,
        )
        assert record.cost_micros == item.cost_micros
    state = await budget_state(user_id=user.id)
    assert state.reserved_tokens == 0
    assert state.tokens_used == sum(r.total_tokens for r in records.values())
    assert state.cost_used_micros == job.cost_micros == sum(i.cost_micros for i in items)
    assert job.list_price_micros == pytest.approx(2 * job.cost_micros, abs=3)


async def test_a_faulty_item_is_errored_and_its_budget_released(providers, user):
    await plan(user)
    good = await document(user, "good.txt", "Fine text.")
    bad = await document(user, "bad.txt", "Broken text. sandbox-fault:500")
    job = await create(
        user_id=user.id, model=CLAUDE, document_ids=[good.id, bad.id], instruction="Summarise."
    )

    await run_to_end(job.id)

    await job.arefresh_from_db()
    assert (job.status, job.succeeded_count, job.errored_count) == ("ended", 1, 1)
    failed = await BatchItem.objects.aget(job=job, document=bad)
    assert failed.status == BatchItem.Status.ERRORED
    assert "Internal server error" in failed.error_message
    assert failed.cost_micros == 0
    assert await UsageRecord.objects.filter(user=user).acount() == 1
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0


async def test_gpt_items_run_as_paced_calls_at_the_standard_price(providers, user):
    await plan(user)
    docs = [await document(user, f"n{i}.txt", f"Note {i}.") for i in range(2)]
    job = await create(
        user_id=user.id, model=GPT, document_ids=[d.id for d in docs], instruction="Summarise."
    )

    assert await batch_job_step(job_id=str(job.id)) is None

    await job.arefresh_from_db()
    assert (job.status, job.succeeded_count) == ("ended", 2)
    assert job.provider_batch_id == ""
    model, _ = catalog.resolve(GPT)
    for item in await items_of(job):
        usage = Usage(item.input_tokens, 0, item.cache_read_tokens, item.output_tokens)
        assert item.cost_micros == call_cost(model, usage) > 0
        record = await UsageRecord.objects.aget(request_id=request_id_of(item))
        assert record.batch is False
        assert record.cost_micros == item.cost_micros
    assert job.list_price_micros == job.cost_micros
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0


@pytest.fixture
def openai_limit(settings):
    """One background request a minute for OpenAI; the limiter's keys cleared around the test."""
    import redis

    def clear() -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            names = list(client.scan_iter(match="chat:limiter:*"))
            if names:
                client.delete(*names)
        finally:
            client.close()

    settings.LLM_OPENAI_REQUESTS_PER_MINUTE = 2
    settings.LLM_BACKGROUND_HEADROOM = 0.5
    clear()
    yield
    clear()


async def test_gpt_items_wait_for_the_provider_limiter_without_holding_budget(
    providers, user, openai_limit
):
    await plan(user)
    docs = [await document(user, f"n{i}.txt", f"Note {i}.") for i in range(2)]
    job = await create(
        user_id=user.id, model=GPT, document_ids=[d.id for d in docs], instruction="Summarise."
    )

    wait = await batch_job_step(job_id=str(job.id))

    assert wait is not None
    assert 0 < wait <= 60
    first, second = await items_of(job)
    assert first.status == BatchItem.Status.SUCCEEDED
    assert second.status == BatchItem.Status.PENDING
    assert second.reservation is None
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0


async def test_an_item_the_budget_cannot_hold_is_refused_and_never_sent(providers, user, settings):
    settings.BUDGETS_MIN_REPLY_TOKENS = 200
    await plan(user, daily_tokens=2500)
    small = await document(user, "small.txt", "A short note.")
    large = await document(user, "large.txt", "Many words in a long document. " * 400)
    job = await create(
        user_id=user.id, model=CLAUDE, document_ids=[small.id, large.id], instruction="Summarise."
    )

    await run_to_end(job.id)

    await job.arefresh_from_db()
    assert (job.succeeded_count, job.refused_count) == (1, 1)
    refused = await BatchItem.objects.aget(job=job, document=large)
    assert refused.status == BatchItem.Status.REFUSED
    assert refused.error_code == "budget_exceeded"
    assert "left in today's budget" in refused.error_message
    assert refused.reservation is None
    assert refused.output_text == ""
    assert not await UsageRecord.objects.filter(request_id=request_id_of(refused)).aexists()
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0


async def test_a_job_whose_every_item_is_refused_sends_nothing(providers, user):
    await plan(user, daily_tokens=100)
    doc = await document(user, "a.txt", "Some text.")
    job = await create(user_id=user.id, model=CLAUDE, document_ids=[doc.id], instruction="Go.")

    assert await batch_job_step(job_id=str(job.id)) is None

    await job.arefresh_from_db()
    assert (job.status, job.refused_count, job.provider_batch_id) == ("ended", 1, "")
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0


def test_another_users_document_is_not_found_and_nothing_is_stored(providers, user, other_user):
    mine = make_document(user, "mine.txt", "Mine.")
    theirs = make_document(other_user, "theirs.txt", "Theirs.")

    with pytest.raises(errors.NotFound, match="does not exist"):
        batch_job_create(
            user_id=user.id, model=CLAUDE, document_ids=[mine.id, theirs.id], instruction="Go."
        )
    with pytest.raises(errors.NotFound):
        batch_job_create(user_id=user.id, model=CLAUDE, document_ids=["nope"], instruction="Go.")
    assert not BatchJob.objects.exists()
    assert not BatchItem.objects.exists()


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"instruction": "  "}, errors.InvalidInput, "Write what to do"),
        ({"instruction": "x" * 5000}, errors.InvalidInput, "5,000 characters"),
        ({"document_ids": []}, errors.InvalidInput, "at least one document"),
        ({"model": "claude-nope"}, errors.NotFound, "Unknown model"),
        ({"status": Document.Status.PROCESSING}, errors.InvalidInput, "is still being read"),
        ({"status": Document.Status.FAILED}, errors.InvalidInput, "could not be read"),
        ({"allowed": "gpt-4o-mini"}, errors.Refused, "plan doesn't include"),
        ({"many": 3}, errors.InvalidInput, "at most 2 documents"),
    ],
)
def test_bad_input_is_refused_with_a_specific_message(
    providers, user, settings, change, error, message
):
    settings.CHAT_BATCH_MAX_DOCUMENTS = 2
    set_plan(user, allowed_models=change.get("allowed", ""))
    docs = [
        make_document(user, f"d{i}.txt", "Text.", status=change.get("status", "ready"))
        for i in range(change.get("many", 1))
    ]
    args = {
        "user_id": user.id,
        "model": change.get("model", CLAUDE),
        "document_ids": change.get("document_ids", [d.id for d in docs]),
        "instruction": change.get("instruction", "Summarise."),
    }

    with pytest.raises(error, match=message):
        batch_job_create(**args)
    assert not BatchJob.objects.exists()


def test_a_document_too_long_for_the_model_is_refused(providers, user):
    set_plan(user)
    doc = make_document(user, "huge.txt", "word " * 10)
    doc.token_counts = {"claude": 250_000}
    doc.save()

    too_long = re.escape("“huge.txt” is too long for Claude Sonnet 4.6")
    with pytest.raises(errors.InvalidInput, match=too_long):
        batch_job_create(user_id=user.id, model=CLAUDE, document_ids=[doc.id], instruction="Go.")


async def test_cancel_before_it_runs_ends_it_at_once(providers, user):
    await plan(user)
    doc = await document(user, "a.txt", "Text.")
    job = await create(user_id=user.id, model=CLAUDE, document_ids=[doc.id], instruction="Go.")

    canceled = await sync_to_async(batch_job_cancel)(user_id=user.id, job_id=job.id)

    assert canceled.status == BatchJob.Status.CANCELED
    assert await batch_job_step(job_id=str(job.id)) is None
    [item] = await items_of(job)
    assert item.status == BatchItem.Status.CANCELED
    assert item.reservation is None
    with pytest.raises(errors.InvalidInput, match="already finished"):
        await sync_to_async(batch_job_cancel)(user_id=user.id, job_id=job.id)


@pytest.fixture
def slow_provider(settings):
    """Claude batches that take 3 s, so a cancel lands while one is processing."""
    from sandbox.server import SandboxServer

    with SandboxServer(tokens_per_second=4000.0, ttft_ms=0, batch_seconds=3.0) as server:
        settings.ANTHROPIC_API_KEY = "sk-ant-slow"
        settings.ANTHROPIC_BASE_URL = server.base_url
        yield server


async def test_cancel_while_submitted_cancels_the_provider_batch_and_releases(slow_provider, user):
    await plan(user)
    docs = [await document(user, f"d{i}.txt", f"Text {i}.") for i in range(3)]
    job = await create(
        user_id=user.id, model=CLAUDE, document_ids=[d.id for d in docs], instruction="Go."
    )
    await batch_job_step(job_id=str(job.id))
    assert (await budget_state(user_id=user.id)).reserved_tokens > 0

    await sync_to_async(batch_job_cancel)(user_id=user.id, job_id=job.id)
    await run_to_end(job.id)

    await job.arefresh_from_db()
    assert job.status == BatchJob.Status.CANCELED
    assert job.canceled_count == 3
    batch = slow_provider.app.state.batches.get("sk-ant-slow", job.provider_batch_id)
    assert batch.cancel_initiated is not None
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0
    assert not await UsageRecord.objects.filter(user=user).aexists()


async def test_a_step_run_again_after_a_crash_charges_each_item_once(providers, user):
    await plan(user)
    docs = [await document(user, f"d{i}.txt", f"Text {i}.") for i in range(2)]
    job = await create(
        user_id=user.id, model=CLAUDE, document_ids=[d.id for d in docs], instruction="Go."
    )
    await batch_job_step(job_id=str(job.id))
    await job.arefresh_from_db()
    submitted = job.provider_batch_id
    # The worker dies between submitting and the results: its lease runs out, the task runs
    # again and picks the same provider batch up (nothing submitted twice).
    await BatchJob.objects.filter(pk=job.pk).aupdate(locked_until=None)
    await run_to_end(job.id)
    await job.arefresh_from_db()
    assert job.provider_batch_id == submitted
    assert len(providers.app.state.batches.of("sk-ant-test")) >= 1
    used = (await budget_state(user_id=user.id)).tokens_used
    rows = await UsageRecord.objects.filter(user=user).acount()
    assert rows == 2

    # Then it dies after settling but before recording that: the re-run settles again.
    await BatchItem.objects.filter(job=job).aupdate(
        status=BatchItem.Status.SUBMITTED, settled_at=None
    )
    await BatchJob.objects.filter(pk=job.pk).aupdate(status=BatchJob.Status.RUNNING)
    assert await batch_job_step(job_id=str(job.id)) is None

    state = await budget_state(user_id=user.id)
    assert state.tokens_used == used
    assert state.reserved_tokens == 0
    assert await UsageRecord.objects.filter(user=user).acount() == rows
    assert {i.status for i in await items_of(job)} == {BatchItem.Status.SUCCEEDED}


async def test_a_second_run_while_one_holds_the_job_does_nothing(providers, user):
    await plan(user)
    doc = await document(user, "a.txt", "Text.")
    job = await create(user_id=user.id, model=GPT, document_ids=[doc.id], instruction="Go.")
    from django.utils import timezone

    held_until = timezone.now() + timezone.timedelta(seconds=30)
    await BatchJob.objects.filter(pk=job.pk).aupdate(locked_until=held_until)

    wait = await batch_job_step(job_id=str(job.id))

    assert wait == pytest.approx(30, abs=2)
    [item] = await items_of(job)
    assert item.status == BatchItem.Status.PENDING


async def test_a_job_the_provider_rejects_fails_and_holds_nothing(providers, user, settings):
    await plan(user)
    docs = [await document(user, f"d{i}.txt", f"Text {i}.") for i in range(2)]
    job = await create(
        user_id=user.id, model=CLAUDE, document_ids=[d.id for d in docs], instruction="Go."
    )
    settings.ANTHROPIC_BASE_URL = providers.base_url + "/nowhere"  # every call is a 404

    assert await batch_job_step(job_id=str(job.id)) is None

    await job.arefresh_from_db()
    assert job.status == BatchJob.Status.FAILED
    assert "Claude refused the request" in job.error_message
    assert job.errored_count == 2
    for item in await items_of(job):
        assert item.status == BatchItem.Status.ERRORED
        assert item.settled_at is not None
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0
    assert not await UsageRecord.objects.filter(user=user).aexists()


async def test_a_gpt_answer_that_breaks_is_charged_for_what_it_used(providers, user):
    await plan(user)
    doc = await document(user, "a.txt", "Text. sandbox-fault:drop@5 sandbox-reply:50")
    job = await create(user_id=user.id, model=GPT, document_ids=[doc.id], instruction="Go.")

    assert await batch_job_step(job_id=str(job.id)) is None

    [item] = await items_of(job)
    assert item.status == BatchItem.Status.ERRORED
    assert item.error_code == "stream_interrupted"
    assert item.output_text
    assert item.output_tokens > 0
    record = await UsageRecord.objects.aget(request_id=request_id_of(item))
    assert record.outcome == "failed"
    assert record.cost_micros == item.cost_micros > 0
    state = await budget_state(user_id=user.id)
    assert state.reserved_tokens == 0
    assert state.tokens_used == record.total_tokens


async def test_a_provider_outage_at_submit_keeps_the_holds_and_submits_next_time(
    providers, user, settings
):
    await plan(user)
    doc = await document(user, "a.txt", "Text.")
    job = await create(user_id=user.id, model=CLAUDE, document_ids=[doc.id], instruction="Go.")
    settings.ANTHROPIC_BASE_URL = "http://127.0.0.1:9"  # nothing listens: connection refused

    wait = await batch_job_step(job_id=str(job.id))

    assert wait == pytest.approx(0.2)
    await job.arefresh_from_db()
    assert (job.status, job.provider_batch_id) == (BatchJob.Status.QUEUED, "")
    [item] = await items_of(job)
    assert item.status == BatchItem.Status.RESERVED
    assert (await budget_state(user_id=user.id)).reserved_tokens > 0

    settings.ANTHROPIC_BASE_URL = providers.base_url  # the provider is back
    await run_to_end(job.id)

    await job.arefresh_from_db()
    assert (job.status, job.succeeded_count) == (BatchJob.Status.ENDED, 1)
    assert await UsageRecord.objects.filter(user=user).acount() == 1
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0


async def test_an_unexpected_error_fails_the_job_and_leaves_no_hold(providers, user, monkeypatch):
    await plan(user)
    doc = await document(user, "a.txt", "Text.")
    job = await create(user_id=user.id, model=CLAUDE, document_ids=[doc.id], instruction="Go.")

    async def broken(requests):
        raise RuntimeError("a bug")

    monkeypatch.setattr(batch_runs.provider_batches, "batch_submit", broken)

    with pytest.raises(RuntimeError, match="a bug"):  # the task fails and logs it
        await batch_job_step(job_id=str(job.id))

    await job.arefresh_from_db()
    assert job.status == BatchJob.Status.FAILED
    assert job.locked_until is None
    [item] = await items_of(job)
    assert (item.status, item.error_code) == (BatchItem.Status.ERRORED, "job_failed")
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0
