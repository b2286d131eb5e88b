"""GPT batch items: paced individual calls through the adapters, each reserved and settled.

One item at a time: the provider limiter (chat/services/limiter.py) is asked first, and a
wait it asks for ends the step (the task comes back then) with nothing reserved for the item.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.utils import timezone

from chat import errors
from chat.models import BatchItem, BatchJob
from chat.providers import catalog, tokens
from chat.providers.base import StreamEnd, TextDelta
from chat.providers.retry import stream_with_retries
from chat.providers.specs import ModelInfo
from chat.services.batch_accounting import item_settle
from chat.services.batch_items import (
    S,
    item_close,
    item_granted,
    item_hold,
    item_provider_request,
    item_store_usage,
    item_succeeded,
    item_usage,
    job_cancel_open,
    job_finish,
)
from chat.services.limiter import limiter_acquire_background_async


async def paced_step(job: BatchJob, model: ModelInfo) -> float | None:
    """GPT items one at a time, each reserved, asked of the limiter, called and settled."""
    if job.status == BatchJob.Status.QUEUED:
        job.status = BatchJob.Status.RUNNING
        await job.asave(update_fields=["status"])
    # Results stored but not yet charged (a run that died while settling) are charged first.
    stored = job.items.filter(status__in=(S.SUCCEEDED, S.ERRORED), settled_at__isnull=True)
    for item in [i async for i in stored]:
        outcome = "finished" if item.status == S.SUCCEEDED else "failed"
        await item_settle(
            item=item, model=model, usage=item_usage(item), outcome=outcome, batched=False
        )
        item.settled_at = timezone.now()
        await item.asave(update_fields=["settled_at"])
    while True:
        if await BatchJob.objects.filter(pk=job.pk, cancel_requested_at__isnull=False).aexists():
            await job_cancel_open(job)
            return None
        item = (
            await job.items.filter(status__in=(S.PENDING, S.RESERVED)).order_by("position").afirst()
        )
        if item is None:
            await job_finish(job)
            return None
        estimate = tokens.local_prompt_tokens(
            model, item_provider_request(job, item, job.max_tokens)
        )
        try:
            wait = await limiter_acquire_background_async(
                provider=model.provider, tokens=estimate + job.max_tokens
            )
        except errors.InvalidInput as exc:  # this item can never fit the provider's limit
            await item_close(item, S.ERRORED, code=exc.code, message=exc.message)
            continue
        if wait > 0:
            return wait
        try:
            if item.status == S.PENDING and not await item_hold(job, model, item, batched=False):
                continue
        except errors.Refused:  # the budget store is down: nothing sent, try again later
            return settings.CHAT_BATCH_POLL_SECONDS
        await _call(job, model, item)
        await BatchJob.objects.filter(pk=job.pk).aupdate(
            locked_until=timezone.now() + dt.timedelta(seconds=settings.CHAT_BATCH_LEASE_SECONDS)
        )


async def _call(job: BatchJob, model: ModelInfo, item: BatchItem) -> None:
    """One reserved GPT item through the adapter and our retry policy, then settled."""
    _, provider = catalog.resolve(job.model)
    request = item_provider_request(job, item, item_granted(job, item))
    parts: list[str] = []
    try:
        async for event in stream_with_retries(provider, request, model_label=model.label):
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, StreamEnd):
                await item_succeeded(
                    item, model, "".join(parts), event.stop_reason, event.usage, batched=False
                )
    except errors.ProviderError as exc:
        if exc.usage is None or not exc.usage.total_tokens:
            await item_close(item, S.ERRORED, code=exc.code, message=exc.message)
            return
        item.status, item.output_text = S.ERRORED, "".join(parts)
        item.error_code, item.error_message = exc.code, exc.message
        item_store_usage(item, model, exc.usage, batched=False)
        item.finished_at = timezone.now()
        await item.asave()
        await item_settle(item=item, model=model, usage=exc.usage, outcome="failed", batched=False)
        item.settled_at = timezone.now()
        await item.asave(update_fields=["settled_at"])
