"""The Anthropic Messages API: /v1/messages (stream and not), count_tokens, and the models list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox import replies
from sandbox.anthropic_prompt import (
    AnthropicError,
    Prompt,
    check_context,
    invalid,
    parse_max_tokens,
    parse_prompt,
)
from sandbox.cache import CacheUsage
from sandbox.faults import FAULT_HEADER, Fault, FaultSpecError, detect
from sandbox.models import ANTHROPIC_MODELS, ModelSpec, anthropic_model
from sandbox.state import bearer_key, new_id, parse_json_object, sandbox_of
from sandbox.streaming import DropConnection, HangResponse, Pace, StreamResponse, paced
from sandbox.trace import StreamTrace

_STOP_REASONS = {"end": "end_turn", "max_tokens": "max_tokens", "stop_sequence": "stop_sequence"}
_STATUS_FAULTS = {
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    529: ("overloaded_error", "Overloaded"),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
}
_RETRY_HEADERS = {"retry-after": "1", "retry-after-ms": "1000"}


def error_response(
    status: int, error_type: str, message: str, *, headers: dict[str, str] | None = None
) -> Response:
    """Return an error in Anthropic's body shape, with a request-id header."""
    request_id = new_id("req_")
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }
    return JSONResponse(body, status, headers={"request-id": request_id, **(headers or {})})


async def messages(request: Request) -> Response:
    """POST /v1/messages."""
    start = time.monotonic()
    try:
        return await _messages(request, start)
    except AnthropicError as exc:
        return error_response(exc.status, exc.error_type, exc.message)


async def count_tokens(request: Request) -> Response:
    """POST /v1/messages/count_tokens."""
    try:
        body, _ = await _authorised_body(request)
        prompt = parse_prompt(body, max_context=sandbox_of(request).settings.max_context)
    except AnthropicError as exc:
        return error_response(exc.status, exc.error_type, exc.message)
    return JSONResponse(
        {"input_tokens": prompt.input_tokens}, headers={"request-id": new_id("req_")}
    )


def model_info(spec: ModelSpec) -> dict[str, object]:
    """One model in Anthropic's models-list shape."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec.created))
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.display_name,
        "created_at": created,
    }


def list_models(request: Request) -> Response:
    """GET /v1/models, paginated by limit, after_id and before_id as the real API is."""
    if not _api_key(request):
        return error_response(401, "authentication_error", "invalid x-api-key")
    ids = [m.id for m in ANTHROPIC_MODELS]
    query = request.query_params
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit():
        return error_response(400, "invalid_request_error", "limit: Input should be an integer")
    limit = max(1, min(1000, int(raw_limit)))
    lo, hi = 0, len(ids)
    if query.get("after_id") in ids:
        lo = ids.index(query["after_id"]) + 1
    if query.get("before_id") in ids:
        hi = ids.index(query["before_id"])
        lo = max(lo, hi - limit)
    page = list(ANTHROPIC_MODELS[lo : min(hi, lo + limit)])
    return JSONResponse(
        {
            "data": [model_info(m) for m in page],
            "has_more": lo + limit < hi,
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
        },
        headers={"request-id": new_id("req_")},
    )


def get_model(request: Request) -> Response:
    """GET /v1/models/{model_id}."""
    if not _api_key(request):
        return error_response(401, "authentication_error", "invalid x-api-key")
    model_id = request.path_params["model_id"]
    spec = anthropic_model(model_id)
    if spec is None:
        return error_response(404, "not_found_error", f"model: {model_id}")
    return JSONResponse(model_info(spec), headers={"request-id": new_id("req_")})


def _api_key(request: Request) -> str:
    return request.headers.get("x-api-key", "").strip() or bearer_key(request)


async def _authorised_body(request: Request) -> tuple[dict[str, object], bytes]:
    if not _api_key(request):
        raise AnthropicError(401, "authentication_error", "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        raise invalid("anthropic-version: header is required")
    raw = await request.body()
    try:
        return parse_json_object(raw), raw
    except ValueError as exc:
        raise invalid(f"There was an error parsing the body of your request: {exc}") from exc


async def _messages(request: Request, start: float) -> Response:
    sandbox = sandbox_of(request)
    body, raw = await _authorised_body(request)
    prompt = parse_prompt(body, max_context=sandbox.settings.max_context)
    max_tokens = parse_max_tokens(body, prompt.model)
    check_context(prompt, max_tokens)
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop_sequences: Input should be a valid list of strings")
    try:
        fault = detect(request.headers.get(FAULT_HEADER), prompt.question)
    except FaultSpecError as exc:
        raise invalid(str(exc)) from exc
    key = _api_key(request)
    if fault and fault.kind == "status" and sandbox.attempts.should_fail(fault, key, raw):
        kind, message = _STATUS_FAULTS[fault.status]
        headers = _RETRY_HEADERS if fault.status == 429 else None
        return error_response(fault.status, kind, f"{message} (sandbox fault)", headers=headers)
    if fault and fault.kind == "hang":
        return HangResponse()
    cache = sandbox.anthropic_cache.apply(
        api_key=key,
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
        max_tokens=max_tokens,
        exact_tokens=replies.requested_length(
            request.headers.get(replies.REPLY_HEADER), prompt.question
        ),
        stop_sequences=stops,
    )
    pace = sandbox.pace(start=start, fault=fault)
    message_id = new_id("msg_")
    headers = {"request-id": new_id("req_")}
    if body.get("stream"):
        trace = None
        if sandbox.trace is not None:
            trace = sandbox.trace.open(
                id=message_id,
                provider="anthropic",
                model=prompt.model.id,
                question=prompt.question,
                body=body,
            )
        events = _events(message_id, prompt, cache, reply, pace, fault, trace)
        return StreamResponse(events, headers={**headers, "cache-control": "no-cache"})
    return await _whole_message(message_id, prompt, cache, reply, pace, fault, headers)


async def _whole_message(
    message_id: str,
    prompt: Prompt,
    cache: CacheUsage,
    reply: replies.Reply,
    pace: Pace,
    fault: Fault | None,
    headers: dict[str, str],
) -> Response:
    if fault and fault.kind == "error":
        return error_response(500, "api_error", "Internal server error (sandbox fault)")
    if fault and fault.kind == "drop":
        return StreamResponse(_dropped(), headers=headers, media_type="application/json")
    await pace.wait(max(0, reply.output_tokens - (reply.pieces[-1].tokens if reply.pieces else 0)))
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": prompt.model.id,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _STOP_REASONS[reply.stop],
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(prompt, cache, reply.output_tokens),
    }
    return JSONResponse(message, headers=headers)


async def _dropped() -> AsyncIterator[bytes]:
    raise DropConnection
    yield b""  # pragma: no cover - makes this an async generator


def _usage(prompt: Prompt, cache: CacheUsage, output_tokens: int) -> dict[str, object]:
    # input_tokens excludes cache reads and writes, as on the real API.
    return {
        "input_tokens": prompt.input_tokens - cache.read - cache.written,
        "cache_creation_input_tokens": cache.written,
        "cache_read_input_tokens": cache.read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache.write_5m,
            "ephemeral_1h_input_tokens": cache.write_1h,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _sse(event: str, data: dict[str, object]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _events(
    message_id: str,
    prompt: Prompt,
    cache: CacheUsage,
    reply: replies.Reply,
    pace: Pace,
    fault: Fault | None,
    trace: StreamTrace | None = None,
) -> AsyncIterator[bytes]:
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": prompt.model.id,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(prompt, cache, 1),
    }
    yield _sse("message_start", {"type": "message_start", "message": message})
    block = {"type": "text", "text": ""}
    yield _sse(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    yield _sse("ping", {"type": "ping"})
    sent = 0
    async for piece in paced(reply.pieces, pace):
        if fault and fault.kind in ("error", "drop") and sent >= fault.after:
            break
        delta = {"type": "text_delta", "text": piece.text}
        event = _sse(
            "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
        )
        if trace is not None:
            trace.record(piece)
        yield event
        sent += piece.tokens
    if fault and fault.kind == "drop":
        raise DropConnection
    if fault and fault.kind == "error":
        error = {"type": "overloaded_error", "message": "Overloaded"}
        yield _sse("error", {"type": "error", "error": error})
        return
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    usage = _usage(prompt, cache, reply.output_tokens)
    usage.pop("cache_creation")
    usage.pop("service_tier")
    delta = {"stop_reason": _STOP_REASONS[reply.stop], "stop_sequence": reply.stop_sequence}
    yield _sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
    yield _sse("message_stop", {"type": "message_stop"})
