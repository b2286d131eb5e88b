"""A batch job's tallies and the reads of the batch pages: progress, cost, what was saved."""

from __future__ import annotations

import uuid

from django.db.models import Count, Sum

from chat.models import BatchItem, BatchJob, Document
from chat.providers import catalog
from chat.providers.base import Usage
from chat.services.accounting import call_cost

_COUNTED = {
    BatchItem.Status.SUCCEEDED: "succeeded_count",
    BatchItem.Status.ERRORED: "errored_count",
    BatchItem.Status.EXPIRED: "errored_count",
    BatchItem.Status.REFUSED: "refused_count",
    BatchItem.Status.CANCELED: "canceled_count",
}


async def batch_job_refresh(*, job_id: uuid.UUID) -> None:
    """Recount the job's items and costs from its items (the items are the truth)."""
    job = await BatchJob.objects.aget(pk=job_id)
    counts = dict.fromkeys(set(_COUNTED.values()), 0)
    rows = BatchItem.objects.filter(job_id=job_id).values("status").annotate(n=Count("id"))
    async for row in rows:
        if field := _COUNTED.get(row["status"]):
            counts[field] += row["n"]
    cost = await BatchItem.objects.filter(job_id=job_id).aaggregate(total=Sum("cost_micros"))
    list_price = 0
    try:
        model, _ = catalog.resolve(job.model)
    except Exception:  # the model left the catalog: keep the last figure
        list_price = job.list_price_micros
    else:
        usages = BatchItem.objects.filter(job_id=job_id, cost_micros__gt=0).values_list(
            "input_tokens", "cache_write_tokens", "cache_read_tokens", "output_tokens"
        )
        async for counts_row in usages:
            list_price += call_cost(model, Usage(*counts_row))
    await BatchJob.objects.filter(pk=job_id).aupdate(
        cost_micros=cost["total"] or 0, list_price_micros=list_price, **counts
    )


def batch_job_saving(job: BatchJob) -> int:
    """Micro-dollars the batch price saved against the standard price."""
    return max(0, job.list_price_micros - job.cost_micros)


JOB_LIST_LIMIT = 50


def batch_job_list(*, user_id: int) -> list[BatchJob]:
    """The user's most recent batch jobs, newest first."""
    return list(BatchJob.objects.filter(user_id=user_id).order_by("-created_at")[:JOB_LIST_LIMIT])


def batch_item_rows(*, job: BatchJob) -> list[BatchItem]:
    """The job's items in order, each with `saving_micros`: what the batch price saved on it."""
    items = list(job.items.defer("input_text").order_by("position"))
    try:
        model, _ = catalog.resolve(job.model)
    except Exception:  # the model left the catalog: no saving to show
        model = None
    for item in items:
        usage = Usage(
            item.input_tokens, item.cache_write_tokens, item.cache_read_tokens, item.output_tokens
        )
        full = call_cost(model, usage) if model is not None and item.cost_micros else 0
        item.saving_micros = max(0, full - item.cost_micros)  # type: ignore[attr-defined]
    return items


def batch_ready_documents(*, user_id: int) -> list[Document]:
    """The user's documents a batch can take (ready), newest first, without bytes or text."""
    ready = Document.objects.filter(user_id=user_id, status=Document.Status.READY)
    return list(ready.defer("data", "text").order_by("-created_at"))
