"""The Anthropic Message Batches API: create, retrieve, list, cancel, delete and results.

A batch is validated when it is created, as the real API does (each request's custom_id unique
and well formed, its params checked like POST /v1/messages, no `stream`), then "processes" for
the sandbox's `batch_seconds`: it stays `in_progress` (every request counted as `processing`)
until then, and ends with one result per request. Items finish in order, evenly spread over
that time, so a cancel part-way ends the batch with the finished items `succeeded` and the rest
`canceled`. Results are built as /v1/messages builds a reply (same text, honest token counts,
simulated prompt caching, `service_tier: "batch"`); `sandbox-fault:KIND` in an item's last user
message makes that item `errored` with the matching error type. Batches belong to the API key
that created them; another key sees a 404, as another workspace would.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox import replies
from sandbox.anthropic_api import error_response
from sandbox.anthropic_prompt import (
    AnthropicError,
    Prompt,
    check_context,
    invalid,
    parse_max_tokens,
    parse_prompt,
)
from sandbox.faults import FaultSpecError, detect
from sandbox.state import bearer_key, new_id, parse_json_object, sandbox_of

EXPIRY_SECONDS = 24 * 3600
MAX_REQUESTS = 100_000
CANCEL_SECONDS = 0.2  # how long a canceled batch stays `canceling`
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}
_FAULT_ERRORS = {
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    529: ("overloaded_error", "Overloaded"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
}


@dataclass(frozen=True, slots=True)
class Item:
    """One validated request of a batch."""

    custom_id: str
    prompt: Prompt
    max_tokens: int
    stop_sequences: tuple[str, ...]


@dataclass
class Batch:
    """One batch and, once it has ended, its results."""

    id: str
    api_key: str
    items: tuple[Item, ...]
    created: float
    ends: float
    cancel_initiated: float | None = None
    results: list[dict[str, object]] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ended_at(self, now: float) -> float | None:
        """When processing ended, or None while it goes on."""
        end = self.ends
        if self.cancel_initiated is not None:
            end = min(end, self.cancel_initiated + CANCEL_SECONDS)
        end = min(end, self.created + EXPIRY_SECONDS)
        return end if now >= end else None

    def finished_by(self, moment: float) -> int:
        """How many items (in order) were done by `moment`."""
        span = max(self.ends - self.created, 1e-9)
        return min(len(self.items), int(len(self.items) * (moment - self.created) / span))


class BatchStore:
    """Every batch of one sandbox, in memory."""

    def __init__(self, processing_seconds: float) -> None:
        if processing_seconds < 0:
            raise ValueError("batch processing time cannot be negative")
        self.processing_seconds = processing_seconds
        self._batches: dict[str, Batch] = {}
        self._lock = threading.Lock()

    def add(self, api_key: str, items: tuple[Item, ...]) -> Batch:
        now = time.time()
        batch = Batch(new_id("msgbatch_"), api_key, items, now, now + self.processing_seconds)
        with self._lock:
            self._batches[batch.id] = batch
        return batch

    def get(self, api_key: str, batch_id: str) -> Batch | None:
        with self._lock:
            batch = self._batches.get(batch_id)
        return batch if batch is not None and batch.api_key == api_key else None

    def of(self, api_key: str) -> list[Batch]:
        """The key's batches, newest first."""
        with self._lock:
            batches = [b for b in self._batches.values() if b.api_key == api_key]
        return sorted(batches, key=lambda b: b.created, reverse=True)

    def delete(self, batch_id: str) -> None:
        with self._lock:
            self._batches.pop(batch_id, None)


def store_of(request: Request) -> BatchStore:
    """The batch store of the app serving request."""
    return request.app.state.batches  # type: ignore[no-any-return]


def _rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def _api_key(request: Request) -> str:
    key = request.headers.get("x-api-key", "").strip() or bearer_key(request)
    if not key:
        raise AnthropicError(401, "authentication_error", "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        raise invalid("anthropic-version: header is required")
    return key


def _results_url(request: Request, batch: Batch) -> str:
    return f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{batch.id}/results"


def _describe(request: Request, batch: Batch) -> dict[str, object]:
    """The MessageBatch object."""
    now = time.time()
    ended = batch.ended_at(now)
    counts = {"processing": len(batch.items), "succeeded": 0, "errored": 0}
    counts |= {"canceled": 0, "expired": 0}
    status = "in_progress" if batch.cancel_initiated is None else "canceling"
    if ended is not None:
        status = "ended"
        counts["processing"] = 0
        for result in _results(request, batch):
            kind = result["result"]["type"]  # type: ignore[index]
            counts[kind] += 1  # type: ignore[index]
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": counts,
        "ended_at": _rfc3339(ended),
        "created_at": _rfc3339(batch.created),
        "expires_at": _rfc3339(batch.created + EXPIRY_SECONDS),
        "archived_at": None,
        "cancel_initiated_at": _rfc3339(batch.cancel_initiated),
        "results_url": _results_url(request, batch) if ended is not None else None,
    }


def _parse_items(body: dict[str, object], max_context: int | None) -> tuple[Item, ...]:
    requests = body.get("requests")
    if requests is None:
        raise invalid("requests: Field required")
    if not isinstance(requests, list):
        raise invalid("requests: Input should be a valid list")
    if not requests:
        raise invalid("requests: List should have at least 1 item after validation, not 0")
    if len(requests) > MAX_REQUESTS:
        raise invalid(f"requests: List should have at most {MAX_REQUESTS} items")
    items: list[Item] = []
    seen: set[str] = set()
    for i, entry in enumerate(requests):
        if not isinstance(entry, dict):
            raise invalid(f"requests.{i}: Input should be a valid dictionary")
        custom_id = entry.get("custom_id")
        if not isinstance(custom_id, str):
            raise invalid(f"requests.{i}.custom_id: Field required")
        if not _CUSTOM_ID.match(custom_id):
            raise invalid(
                f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if custom_id in seen:
            raise invalid(
                f"Duplicate custom_id {custom_id!r}: custom_id must be unique within a batch."
            )
        seen.add(custom_id)
        params = entry.get("params")
        if not isinstance(params, dict):
            raise invalid(f"requests.{i}.params: Field required")
        try:
            items.append(_parse_params(params, custom_id, max_context))
        except AnthropicError as exc:
            raise AnthropicError(
                exc.status, exc.error_type, f"requests.{i}.params: {exc.message}"
            ) from exc
    return tuple(items)


def _parse_params(params: dict[str, object], custom_id: str, max_context: int | None) -> Item:
    if params.get("stream"):
        raise invalid("stream: Streaming is not supported in batches")
    prompt = parse_prompt(params, max_context=max_context)
    max_tokens = parse_max_tokens(params, prompt.model)
    check_context(prompt, max_tokens)
    stops = params.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    try:
        detect(None, prompt.question)
    except FaultSpecError as exc:  # pragma: no cover - text directives never raise
        raise invalid(str(exc)) from exc
    return Item(custom_id, prompt, max_tokens, tuple(stops))


def _results(request: Request, batch: Batch) -> list[dict[str, object]]:
    """The batch's results, built once when first asked for after it ended."""
    with batch.lock:
        if batch.results is None:
            done = len(batch.items)
            if batch.cancel_initiated is not None:
                done = batch.finished_by(batch.cancel_initiated)
            batch.results = [
                {
                    "custom_id": item.custom_id,
                    "result": _run(request, batch.api_key, item)
                    if i < done
                    else {"type": "canceled"},
                }
                for i, item in enumerate(batch.items)
            ]
        return batch.results


def _run(request: Request, api_key: str, item: Item) -> dict[str, object]:
    """One item's result, as /v1/messages would have answered it."""
    fault = detect(None, item.prompt.question)
    if fault is not None and fault.kind != "slow":
        kind, message = _FAULT_ERRORS.get(fault.status, _FAULT_ERRORS[500])
        error = {"type": kind, "message": f"{message} (sandbox fault)"}
        return {
            "type": "errored",
            "error": {"type": "error", "error": error, "request_id": new_id("req_")},
        }
    prompt = item.prompt
    cache = sandbox_of(request).anthropic_cache.apply(
        api_key=api_key,
        model=prompt.model.id,
        segments=prompt.segments,
        min_cacheable=prompt.model.min_cacheable,
    )
    reply = replies.compose(
        seed=prompt.seed,
        question=prompt.question,
        model=prompt.model.id,
        message_count=prompt.message_count,
        input_tokens=prompt.input_tokens,
        max_tokens=item.max_tokens,
        exact_tokens=replies.requested_length(None, prompt.question),
        stop_sequences=item.stop_sequences,
    )
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": prompt.model.id,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _STOP_REASONS[reply.stop],
        "stop_sequence": reply.stop_sequence,
        "usage": {
            # input_tokens excludes cache reads and writes, as on the real API.
            "input_tokens": prompt.input_tokens - cache.read - cache.written,
            "cache_creation_input_tokens": cache.written,
            "cache_read_input_tokens": cache.read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": cache.write_5m,
                "ephemeral_1h_input_tokens": cache.write_1h,
            },
            "output_tokens": reply.output_tokens,
            "service_tier": "batch",
        },
    }
    return {"type": "succeeded", "message": message}


def _headers() -> dict[str, str]:
    return {"request-id": new_id("req_")}


def _not_found(batch_id: str) -> AnthropicError:
    return AnthropicError(404, "not_found_error", f"Message Batch {batch_id} not found.")


async def _create(request: Request) -> Response:
    key = _api_key(request)
    try:
        body = parse_json_object(await request.body())
    except ValueError as exc:
        raise invalid(f"There was an error parsing the body of your request: {exc}") from exc
    items = _parse_items(body, sandbox_of(request).settings.max_context)
    batch = store_of(request).add(key, items)
    return JSONResponse(_describe(request, batch), headers=_headers())


def _batch(request: Request) -> Batch:
    batch_id = request.path_params["batch_id"]
    batch = store_of(request).get(_api_key(request), batch_id)
    if batch is None:
        raise _not_found(batch_id)
    return batch


async def _retrieve(request: Request) -> Response:
    return JSONResponse(_describe(request, _batch(request)), headers=_headers())


async def _list(request: Request) -> Response:
    key = _api_key(request)
    query = request.query_params
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise invalid("limit: Input should be an integer between 1 and 1000")
    limit = int(raw_limit)
    batches = store_of(request).of(key)
    ids = [b.id for b in batches]
    lo, hi = 0, len(ids)
    if query.get("after_id") in ids:
        lo = ids.index(query["after_id"]) + 1
    if query.get("before_id") in ids:
        hi = ids.index(query["before_id"])
        lo = max(lo, hi - limit)
    page = batches[lo : min(hi, lo + limit)]
    return JSONResponse(
        {
            "data": [_describe(request, b) for b in page],
            "has_more": lo + limit < hi,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        },
        headers=_headers(),
    )


async def _cancel(request: Request) -> Response:
    batch = _batch(request)
    now = time.time()
    if batch.ended_at(now) is not None:
        raise invalid(f"Message Batch {batch.id} has already ended and cannot be canceled.")
    with batch.lock:
        if batch.cancel_initiated is None:
            batch.cancel_initiated = now
    return JSONResponse(_describe(request, batch), headers=_headers())


async def _delete(request: Request) -> Response:
    batch = _batch(request)
    if batch.ended_at(time.time()) is None:
        raise invalid(
            f"Message Batch {batch.id} is still processing; cancel it and wait for it to end "
            "before deleting it."
        )
    store_of(request).delete(batch.id)
    return JSONResponse({"id": batch.id, "type": "message_batch_deleted"}, headers=_headers())


async def _results_file(request: Request) -> Response:
    batch = _batch(request)
    if batch.ended_at(time.time()) is None:
        raise invalid(f"Message Batch {batch.id} has not finished processing; no results yet.")
    lines = b"".join(orjson.dumps(r) + b"\n" for r in _results(request, batch))
    return Response(lines, media_type="application/binary", headers=_headers())


def _guarded(handler):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except AnthropicError as exc:
            return error_response(exc.status, exc.error_type, exc.message)

    endpoint.__doc__ = handler.__doc__
    return endpoint


create = _guarded(_create)
retrieve = _guarded(_retrieve)
list_batches = _guarded(_list)
cancel = _guarded(_cancel)
delete = _guarded(_delete)
results = _guarded(_results_file)


async def batches_root(request: Request) -> Response:
    """GET (list) or POST (create) /v1/messages/batches."""
    return await (create if request.method == "POST" else list_batches)(request)


async def batch_item(request: Request) -> Response:
    """GET (retrieve) or DELETE /v1/messages/batches/{batch_id}."""
    return await (delete if request.method == "DELETE" else retrieve)(request)
