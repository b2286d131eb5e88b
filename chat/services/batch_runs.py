"""Running a batch job, one step at a time: Claude through a Message Batch, GPT as paced calls.

`batch_job_step` advances a job as far as it can go now and says when to look again; the task
(chat/tasks/batches.py) re-enqueues itself for then, so no worker sleeps through a batch.

Every item moves through a state machine kept in the database: pending -> reserved (its budget
held, the reservation stored on the row) -> submitted (Claude) -> succeeded / errored /
canceled / expired (result and usage stored) -> settled (`settled_at`: charged, or released).
A step checks the state before acting and stores each result before settling it, so a step run
again after its worker died (the task queue re-runs it) repeats nothing that took effect:
settling and the ledger row are idempotent per item (chat/services/batch_accounting.py). A
lease (`locked_until`) keeps two runs from advancing one job at once. One window is not
closed: a worker killed between the provider accepting a Message Batch and the row recording
its id submits it again on the re-run (the provider may bill both; our ledger charges once).

Reservations and their lifetime: a Claude item's budget is reserved just before the batch is
submitted, for CHAT_BATCH_RESERVATION_TTL (24 hours by default, the longest a Message Batch
can process), not the BUDGETS_RESERVATION_TTL of a chat turn, so the hold cannot lapse while
the provider works; its settle (in the day it was reserved) replaces it by the real usage.
Should a settle come after the hold expired, budgets still counts the usage, as overshoot. A
GPT item is reserved right before its own call, with the ordinary TTL. Items are metered in
tokens and cost but are not live streams: they neither take nor wait for the person's
per-minute and concurrent-stream slots (`background=True`). A refused item is marked refused
with the budget's message and the job goes on with the others; a job that fails releases every
reservation it still holds.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat import errors
from chat.models import BatchItem, BatchJob
from chat.providers import batches as provider_batches
from chat.providers import catalog, tokens
from chat.providers.base import ChatRequest, StreamEnd, TextDelta, Usage
from chat.providers.retry import stream_with_retries
from chat.providers.specs import ModelInfo
from chat.services.batch_accounting import (
    item_cost,
    item_release,
    item_reserve,
    item_settle,
    reservation_dump,
)
from chat.services.batch_progress import batch_job_refresh
from chat.services.batches import item_request

try:  # helper E's provider limiter; without it, background calls are not paced
    from chat.services.limiter import limiter_acquire_background_async
except ImportError:  # pragma: no cover

    async def limiter_acquire_background_async(*, provider: str, tokens: int) -> float:
        return 0.0


logger = logging.getLogger(__name__)

ACTIVE = (BatchJob.Status.QUEUED, BatchJob.Status.RUNNING, BatchJob.Status.CANCELING)
LEASE_SECONDS = 300
S = BatchItem.Status
OPEN = (S.PENDING, S.RESERVED, S.SUBMITTED)


async def batch_job_step(*, job_id: str) -> float | None:
    """Advance the job; seconds until it should be looked at again, or None when it is done."""
    now = timezone.now()
    free = Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    lease = now + dt.timedelta(seconds=LEASE_SECONDS)
    claimed = await BatchJob.objects.filter(free, pk=job_id, status__in=ACTIVE).aupdate(
        locked_until=lease
    )
    if not claimed:
        job = await BatchJob.objects.filter(pk=job_id).afirst()
        if job is None or job.status not in ACTIVE or job.locked_until is None:
            return None
        return max(1.0, (job.locked_until - now).total_seconds())  # another run holds it
    job = await BatchJob.objects.aget(pk=job_id)
    try:
        model, _ = catalog.resolve(job.model)
        if job.provider == "anthropic":
            wait = await _claude_step(job, model)
        else:
            wait = await _paced_step(job, model)
    except errors.ChatError as exc:
        await _fail(job, exc.message)
        wait = None
    except Exception:
        logger.exception("batch job %s failed", job_id)
        await _fail(job, "Something went wrong while running this batch; nothing more is charged.")
        raise
    finally:
        await batch_job_refresh(job_id=job.id)
        await BatchJob.objects.filter(pk=job.pk).aupdate(locked_until=None)
    return wait


async def _items(job: BatchJob, *statuses: str) -> list[BatchItem]:
    return [i async for i in BatchItem.objects.filter(job=job, status__in=statuses)]


async def _finish_job(job: BatchJob) -> None:
    canceled = await BatchJob.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).aexists()
    job.status = BatchJob.Status.CANCELED if canceled else BatchJob.Status.ENDED
    job.finished_at = timezone.now()
    await job.asave(update_fields=["status", "finished_at"])


async def _close(item: BatchItem, status: str, *, code: str = "", message: str = "") -> None:
    """Mark an item that used nothing, and give its reservation back."""
    item.status = status
    item.error_code, item.error_message = code[:64], message
    item.finished_at = timezone.now()
    await item.asave(update_fields=["status", "error_code", "error_message", "finished_at"])
    await item_release(item=item)
    item.settled_at = timezone.now()
    await item.asave(update_fields=["settled_at"])


async def _fail(job: BatchJob, message: str) -> None:
    """End the job as failed: every reservation it holds is released, nothing is left open."""
    if job.provider_batch_id:
        try:
            await provider_batches.batch_cancel(job.provider_batch_id)
        except errors.ProviderError:
            logger.warning("could not cancel provider batch %s", job.provider_batch_id)
    for item in await _items(job, *OPEN):
        await _close(item, S.ERRORED, code="job_failed", message=message)
    for item in [i async for i in job.items.filter(settled_at__isnull=True)]:
        await item_release(item=item)
    job.status, job.error_message = BatchJob.Status.FAILED, message
    job.finished_at = timezone.now()
    await job.asave(update_fields=["status", "error_message", "finished_at"])


async def _cancel_open(job: BatchJob) -> None:
    for item in await _items(job, *OPEN):
        await _close(item, S.CANCELED, message="Canceled before it ran.")
    await _finish_job(job)


async def _reserve(job: BatchJob, model: ModelInfo, item: BatchItem, *, batched: bool) -> bool:
    """Hold the item's budget (pending -> reserved), or mark it refused. True when held."""
    request = _request(job, item, job.max_tokens)
    prompt_tokens = await tokens.count_prompt_tokens(model, request)
    ttl = settings.CHAT_BATCH_RESERVATION_TTL if batched else settings.BUDGETS_RESERVATION_TTL
    try:
        reservation = await item_reserve(
            user_id=job.user_id,
            model=model,
            item=item,
            prompt_tokens=prompt_tokens,
            max_tokens=job.max_tokens,
            ttl_seconds=ttl,
            batched=batched,
        )
    except errors.Refused as exc:
        if exc.code == "budget_unavailable":
            raise
        item.status, item.error_code, item.error_message = S.REFUSED, exc.code, exc.message
        item.finished_at = item.settled_at = timezone.now()
        await item.asave()
        return False
    item.reservation = reservation_dump(reservation)
    item.status = S.RESERVED
    await item.asave(update_fields=["reservation", "status"])
    return True


def _request(job: BatchJob, item: BatchItem, max_tokens: int) -> ChatRequest:
    return item_request(
        model=job.model,
        instruction=job.instruction,
        name=item.document_name,
        text=item.input_text,
        max_tokens=max_tokens,
    )


def _granted(job: BatchJob, item: BatchItem) -> int:
    """The reply cap the budget granted this item (smaller than asked when nearly spent)."""
    return int((item.reservation or {}).get("max_tokens") or job.max_tokens)


async def _claude_step(job: BatchJob, model: ModelInfo) -> float | None:
    if not job.provider_batch_id:
        if job.cancel_requested_at is not None:
            await _cancel_open(job)
            return None
        for item in await _items(job, S.PENDING):
            try:
                await _reserve(job, model, item, batched=True)
            except errors.Refused:  # the budget store is down: try again later
                return settings.CHAT_BATCH_POLL_SECONDS
        reserved = await _items(job, S.RESERVED)
        if not reserved:
            await _finish_job(job)
            return None
        state = await provider_batches.batch_submit(
            [(i.custom_id, _request(job, i, _granted(job, i))) for i in reserved]
        )
        job.provider_batch_id, job.status = state.id, BatchJob.Status.RUNNING
        job.submitted_at = timezone.now()
        await job.asave(update_fields=["provider_batch_id", "status", "submitted_at"])
        await BatchItem.objects.filter(pk__in=[i.pk for i in reserved]).aupdate(status=S.SUBMITTED)
        return settings.CHAT_BATCH_POLL_SECONDS
    try:
        state = await provider_batches.batch_retrieve(job.provider_batch_id)
        if not state.ended:
            cancel = (
                await BatchJob.objects.filter(pk=job.pk)
                .values_list("cancel_requested_at", flat=True)
                .aget()
            )
            if cancel is not None and state.processing_status == "in_progress":
                await provider_batches.batch_cancel(job.provider_batch_id)
            return settings.CHAT_BATCH_POLL_SECONDS
        async for result in provider_batches.batch_results(job.provider_batch_id):
            await _claude_result(job, model, result)
    except errors.ProviderError as exc:
        if not exc.retryable:
            raise
        return max(settings.CHAT_BATCH_POLL_SECONDS, exc.retry_after or 0)
    for item in await _items(job, *OPEN):  # no result came back for it
        await _close(item, S.EXPIRED, code="no_result", message="The provider returned no result.")
    await _finish_job(job)
    return None


_RESULT_STATUS = {"errored": S.ERRORED, "canceled": S.CANCELED, "expired": S.EXPIRED}
_RESULT_TEXT = {
    "canceled": "Canceled before Claude processed it.",
    "expired": "Claude did not get to it within 24 hours.",
}


async def _claude_result(
    job: BatchJob, model: ModelInfo, result: provider_batches.ItemResult
) -> None:
    item = await BatchItem.objects.filter(job=job, custom_id=result.custom_id).afirst()
    if item is None or item.settled_at is not None:
        return
    if result.kind != "succeeded":
        message = result.error_message or _RESULT_TEXT.get(result.kind, "")
        await _close(item, _RESULT_STATUS[result.kind], code=result.error_type, message=message)
        return
    await _succeeded(item, model, result.text, result.stop_reason, result.usage, batched=True)


async def _succeeded(
    item: BatchItem, model: ModelInfo, text: str, stop: str, usage: Usage, *, batched: bool
) -> None:
    """Store the result, then charge it (stored first, so a re-run can settle it)."""
    item.status, item.output_text, item.stop_reason = S.SUCCEEDED, text, stop[:32]
    _store_usage(item, model, usage, batched=batched)
    item.finished_at = timezone.now()
    await item.asave()
    await item_settle(item=item, model=model, usage=usage, outcome="finished", batched=batched)
    item.settled_at = timezone.now()
    await item.asave(update_fields=["settled_at"])


def _store_usage(item: BatchItem, model: ModelInfo, usage: Usage, *, batched: bool) -> None:
    item.input_tokens, item.output_tokens = usage.input_tokens, usage.output_tokens
    item.cache_write_tokens = usage.cache_write_tokens
    item.cache_read_tokens = usage.cache_read_tokens
    item.cost_micros = item_cost(model, usage, batched=batched)


async def _paced_step(job: BatchJob, model: ModelInfo) -> float | None:
    """GPT items one at a time, each reserved, asked of the limiter, called and settled."""
    if job.status == BatchJob.Status.QUEUED:
        job.status = BatchJob.Status.RUNNING
        await job.asave(update_fields=["status"])
    # Results stored but not yet charged (a run that died while settling) are charged first.
    for item in [i async for i in job.items.filter(status=S.SUCCEEDED, settled_at__isnull=True)]:
        await item_settle(
            item=item, model=model, usage=_usage_of(item), outcome="finished", batched=False
        )
        item.settled_at = timezone.now()
        await item.asave(update_fields=["settled_at"])
    while True:
        if await BatchJob.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).aexists():
            await _cancel_open(job)
            return None
        item = (
            await job.items.filter(status__in=(S.PENDING, S.RESERVED)).order_by("position").afirst()
        )
        if item is None:
            await _finish_job(job)
            return None
        estimate = tokens.local_prompt_tokens(model, _request(job, item, job.max_tokens))
        try:
            wait = await limiter_acquire_background_async(
                provider=model.provider, tokens=estimate + job.max_tokens
            )
        except errors.InvalidInput as exc:  # this item can never fit the provider's limit
            await _close(item, S.ERRORED, code=exc.code, message=exc.message)
            continue
        if wait > 0:
            return wait
        if item.status == S.PENDING and not await _reserve(job, model, item, batched=False):
            continue
        await _call(job, model, item)
        await BatchJob.objects.filter(pk=job.pk).aupdate(
            locked_until=timezone.now() + dt.timedelta(seconds=LEASE_SECONDS)
        )


def _usage_of(item: BatchItem) -> Usage:
    return Usage(
        item.input_tokens, item.cache_write_tokens, item.cache_read_tokens, item.output_tokens
    )


async def _call(job: BatchJob, model: ModelInfo, item: BatchItem) -> None:
    """One reserved GPT item through the adapter and our retry policy, then settled."""
    _, provider = catalog.resolve(job.model)
    request = _request(job, item, _granted(job, item))
    parts: list[str] = []
    try:
        async for event in stream_with_retries(provider, request, model_label=model.label):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, StreamEnd):
                await _succeeded(
                    item, model, "".join(parts), event.stop_reason, event.usage, batched=False
                )
    except errors.ProviderError as exc:
        if exc.usage is None or not exc.usage.total_tokens:
            await _close(item, S.ERRORED, code=exc.code, message=exc.message)
            return
        item.status, item.output_text = S.ERRORED, "".join(parts)
        item.error_code, item.error_message = exc.code, exc.message
        _store_usage(item, model, exc.usage, batched=False)
        item.finished_at = timezone.now()
        await item.asave()
        await item_settle(item=item, model=model, usage=exc.usage, outcome="failed", batched=False)
        item.settled_at = timezone.now()
        await item.asave(update_fields=["settled_at"])
