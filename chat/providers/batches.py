"""Anthropic Message Batches through the SDK: submit, look at, cancel, and read the results.

Batches are not on the hot path (a handful of calls per job, minutes apart), so the SDK's own
typed objects are used as they are. Each item's body is the Messages body the streaming adapter
would send (`build_body`, prompt-cache breakpoints included); errors map into the project's
hierarchy at this boundary, as in the other adapters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import anthropic
import httpx2

from chat import errors
from chat.providers.anthropic import LABEL, build_body, map_error
from chat.providers.base import ChatRequest, Usage
from chat.providers.clients import anthropic_client


@dataclass(frozen=True, slots=True)
class BatchState:
    """Where a provider batch is: in_progress, canceling or ended."""

    id: str
    processing_status: str
    processing: int

    @property
    def ended(self) -> bool:
        return self.processing_status == "ended"


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One line of a batch's results: succeeded (text, usage) or not (why)."""

    custom_id: str
    kind: str  # succeeded, errored, canceled, expired
    text: str = ""
    stop_reason: str = ""
    usage: Usage = field(default_factory=Usage)
    error_type: str = ""
    error_message: str = ""


def _state(batch: anthropic.types.messages.MessageBatch) -> BatchState:
    return BatchState(batch.id, batch.processing_status, batch.request_counts.processing)


async def batch_submit(items: Sequence[tuple[str, ChatRequest]]) -> BatchState:
    """Create one Message Batch of (custom_id, request) items."""
    requests = [{"custom_id": cid, "params": build_body(request)} for cid, request in items]
    try:
        batch = await anthropic_client().messages.batches.create(requests=requests)  # type: ignore[arg-type]
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise map_error(exc) from exc
    return _state(batch)


async def batch_retrieve(batch_id: str) -> BatchState:
    """The batch's processing status."""
    try:
        batch = await anthropic_client().messages.batches.retrieve(batch_id)
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise map_error(exc) from exc
    return _state(batch)


async def batch_cancel(batch_id: str) -> BatchState:
    """Ask the provider to stop the batch; items already done keep their results."""
    try:
        batch = await anthropic_client().messages.batches.cancel(batch_id)
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise map_error(exc) from exc
    return _state(batch)


def _usage(raw: anthropic.types.Usage) -> Usage:
    return Usage(
        input_tokens=raw.input_tokens or 0,
        cache_write_tokens=raw.cache_creation_input_tokens or 0,
        cache_read_tokens=raw.cache_read_input_tokens or 0,
        output_tokens=raw.output_tokens or 0,
    )


def _result(line: anthropic.types.messages.MessageBatchIndividualResponse) -> ItemResult:
    result = line.result
    if result.type == "succeeded":
        message = result.message
        text = "".join(b.text for b in message.content if b.type == "text")
        return ItemResult(
            line.custom_id,
            "succeeded",
            text=text,
            stop_reason=message.stop_reason or "",
            usage=_usage(message.usage),
        )
    if result.type == "errored":
        error = result.error.error
        return ItemResult(
            line.custom_id,
            "errored",
            error_type=error.type,
            error_message=f"{LABEL} could not process this document: {error.message}",
        )
    return ItemResult(line.custom_id, result.type)


async def batch_results(batch_id: str) -> AsyncIterator[ItemResult]:
    """The ended batch's results, one per item, in no particular order."""
    try:
        lines = await anthropic_client().messages.batches.results(batch_id)
        async for line in lines:
            yield _result(line)
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise map_error(exc) from exc
    except anthropic.AnthropicError as exc:  # no results_url yet: the batch has not ended
        raise errors.Unavailable(f"{LABEL} has no results for this batch yet.") from exc
