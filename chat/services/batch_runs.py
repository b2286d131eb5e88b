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

The provider limiter (chat/services/limiter.py) paces GPT items, which are ordinary calls
that share the live minute. A Message Batch does not: Anthropic meters batches under limits of
their own, apart from the Messages API that live chat uses, so one submit takes nothing from
live traffic and is not held back by the limiter.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat import errors
from chat.models import BatchItem, BatchJob
from chat.providers import batches as provider_batches
from chat.providers import catalog
from chat.providers.specs import ModelInfo
from chat.services.batch_accounting import item_release, item_settle
from chat.services.batch_items import (
    OPEN,
    S,
    item_close,
    item_granted,
    item_hold,
    item_provider_request,
    item_succeeded,
    item_usage,
    items_in,
    job_cancel_open,
    job_finish,
)
from chat.services.batch_paced import paced_step
from chat.services.batch_progress import batch_job_refresh

logger = logging.getLogger(__name__)

ACTIVE = (BatchJob.Status.QUEUED, BatchJob.Status.RUNNING, BatchJob.Status.CANCELING)


async def batch_job_step(*, job_id: str) -> float | None:
    """Advance the job; seconds until it should be looked at again, or None when it is done."""
    now = timezone.now()
    free = Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    lease = now + dt.timedelta(seconds=settings.CHAT_BATCH_LEASE_SECONDS)
    claimed = await BatchJob.objects.filter(free, pk=job_id, status__in=ACTIVE).aupdate(
        locked_until=lease
    )
    if not claimed:
        job = await BatchJob.objects.filter(pk=job_id).afirst()
        if job is None or job.status not in ACTIVE or job.locked_until is None:
            return None
        return max(1.0, (job.locked_until - now).total_seconds())  # another run holds it
    job = await BatchJob.objects.aget(pk=job_id)
    model: ModelInfo | None = None
    try:
        model, _ = catalog.resolve(job.model)
        if job.provider == "anthropic":
            wait = await _claude_step(job, model)
        else:
            wait = await paced_step(job, model)
    except errors.ChatError as exc:
        await _fail(job, model, exc.message)
        wait = None
    except Exception:
        logger.exception("batch job %s failed", job_id)
        await _fail(
            job, model, "Something went wrong while running this batch; nothing more is charged."
        )
        raise
    finally:
        await batch_job_refresh(job_id=job.id)
        await BatchJob.objects.filter(pk=job.pk).aupdate(locked_until=None)
    return wait


async def _fail(job: BatchJob, model: ModelInfo | None, message: str) -> None:
    """End the job as failed, leaving nothing held: open items are closed and released,
    results already stored are charged (or, when that fails too, released)."""
    if job.provider_batch_id:
        try:
            await provider_batches.batch_cancel(job.provider_batch_id)
        except errors.ProviderError:
            logger.warning("could not cancel provider batch %s", job.provider_batch_id)
    for item in await items_in(job, *OPEN):
        await item_close(item, S.ERRORED, code="job_failed", message=message)
    for item in [i async for i in job.items.filter(settled_at__isnull=True)]:
        try:
            if item.status != S.SUCCEEDED or model is None:
                raise LookupError("nothing to charge")
            batched = job.provider == "anthropic"
            usage = item_usage(item)
            await item_settle(
                item=item, model=model, usage=usage, outcome="finished", batched=batched
            )
        except Exception:
            await item_release(item=item)
        item.settled_at = timezone.now()
        await item.asave(update_fields=["settled_at"])
    job.status, job.error_message = BatchJob.Status.FAILED, message
    job.finished_at = timezone.now()
    await job.asave(update_fields=["status", "error_message", "finished_at"])


async def _claude_step(job: BatchJob, model: ModelInfo) -> float | None:
    """Hold every item's budget and submit one Message Batch; later, poll it and settle."""
    if not job.provider_batch_id:
        if job.cancel_requested_at is not None:
            await job_cancel_open(job)
            return None
        for item in await items_in(job, S.PENDING):
            try:
                await item_hold(job, model, item, batched=True)
            except errors.Refused:  # the budget store is down: try again later
                return settings.CHAT_BATCH_POLL_SECONDS
        reserved = await items_in(job, S.RESERVED)
        if not reserved:
            await job_finish(job)
            return None
        try:
            state = await provider_batches.batch_submit(
                [
                    (i.custom_id, item_provider_request(job, i, item_granted(job, i)))
                    for i in reserved
                ]
            )
        except errors.ProviderError as exc:  # the holds stay; the next step submits again
            if not exc.retryable:
                raise
            return max(settings.CHAT_BATCH_POLL_SECONDS, exc.retry_after or 0)
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
                # Refused when it ended meanwhile: the next look reads the results.
                with contextlib.suppress(errors.Rejected):
                    await provider_batches.batch_cancel(job.provider_batch_id)
            return settings.CHAT_BATCH_POLL_SECONDS
        async for result in provider_batches.batch_results(job.provider_batch_id):
            await _claude_result(job, model, result)
    except errors.ProviderError as exc:
        if not exc.retryable:
            raise
        return max(settings.CHAT_BATCH_POLL_SECONDS, exc.retry_after or 0)
    for item in await items_in(job, *OPEN):  # no result came back for it
        await item_close(
            item, S.EXPIRED, code="no_result", message="The provider returned no result."
        )
    await job_finish(job)
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
        await item_close(item, _RESULT_STATUS[result.kind], code=result.error_type, message=message)
        return
    await item_succeeded(item, model, result.text, result.stop_reason, result.usage, batched=True)
