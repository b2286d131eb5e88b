"""One batch item's state: hold its budget, build its request, store its result, close it.

The state machine these move an item through is described in chat/services/batch_runs.py.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from chat import errors
from chat.models import BatchItem, BatchJob
from chat.providers import tokens
from chat.providers.base import ChatRequest, Usage
from chat.providers.specs import ModelInfo
from chat.services.batch_accounting import (
    item_cost,
    item_release,
    item_reserve,
    item_settle,
    reservation_dump,
)
from chat.services.batches import item_request

S = BatchItem.Status
OPEN = (S.PENDING, S.RESERVED, S.SUBMITTED)


async def items_in(job: BatchJob, *statuses: str) -> list[BatchItem]:
    """The job's items in these states."""
    return [i async for i in BatchItem.objects.filter(job=job, status__in=statuses)]


async def job_finish(job: BatchJob) -> None:
    """End the job: canceled if someone asked for that, else ended."""
    canceled = await BatchJob.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).aexists()
    job.status = BatchJob.Status.CANCELED if canceled else BatchJob.Status.ENDED
    job.finished_at = timezone.now()
    await job.asave(update_fields=["status", "finished_at"])


async def item_close(item: BatchItem, status: str, *, code: str = "", message: str = "") -> None:
    """Mark an item that used nothing, and give its reservation back."""
    item.status = status
    item.error_code, item.error_message = code[:64], message
    item.finished_at = timezone.now()
    await item.asave(update_fields=["status", "error_code", "error_message", "finished_at"])
    await item_release(item=item)
    item.settled_at = timezone.now()
    await item.asave(update_fields=["settled_at"])


async def job_cancel_open(job: BatchJob) -> None:
    """Cancel every item that has not run (releasing its hold) and end the job."""
    for item in await items_in(job, *OPEN):
        await item_close(item, S.CANCELED, message="Canceled before it ran.")
    await job_finish(job)


async def item_hold(job: BatchJob, model: ModelInfo, item: BatchItem, *, batched: bool) -> bool:
    """Hold the item's budget (pending -> reserved), or mark it refused. True when held."""
    request = item_provider_request(job, item, job.max_tokens)
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
            team_id=job.billing_team_id,
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


def item_provider_request(job: BatchJob, item: BatchItem, max_tokens: int) -> ChatRequest:
    return item_request(
        model=job.model,
        instruction=job.instruction,
        name=item.document_name,
        text=item.input_text,
        max_tokens=max_tokens,
    )


def item_granted(job: BatchJob, item: BatchItem) -> int:
    """The reply cap the budget granted this item (smaller than asked when nearly spent)."""
    return int((item.reservation or {}).get("max_tokens") or job.max_tokens)


async def item_succeeded(
    item: BatchItem, model: ModelInfo, text: str, stop: str, usage: Usage, *, batched: bool
) -> None:
    """Store the result, then charge it (stored first, so a re-run can settle it)."""
    item.status, item.output_text, item.stop_reason = S.SUCCEEDED, text, stop[:32]
    item_store_usage(item, model, usage, batched=batched)
    item.finished_at = timezone.now()
    await item.asave()
    await item_settle(item=item, model=model, usage=usage, outcome="finished", batched=batched)
    item.settled_at = timezone.now()
    await item.asave(update_fields=["settled_at"])


def item_store_usage(item: BatchItem, model: ModelInfo, usage: Usage, *, batched: bool) -> None:
    item.input_tokens, item.output_tokens = usage.input_tokens, usage.output_tokens
    item.cache_write_tokens = usage.cache_write_tokens
    item.cache_read_tokens = usage.cache_read_tokens
    item.cost_micros = item_cost(model, usage, batched=batched)


def item_usage(item: BatchItem) -> Usage:
    return Usage(
        item.input_tokens, item.cache_write_tokens, item.cache_read_tokens, item.output_tokens
    )
