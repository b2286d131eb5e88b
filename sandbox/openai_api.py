"""The OpenAI Chat Completions API: /v1/chat/completions (stream and not) and the models list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox import replies
from sandbox.faults import FAULT_HEADER, Fault, FaultSpecError, detect
from sandbox.models import OPENAI_MODELS, ModelSpec, openai_model
from sandbox.openai_prompt import (
    ChatPrompt,
    OpenAIError,
    parse_chat,
    parse_max_tokens,
    stop_sequences,
)
from sandbox.state import bearer_key, new_id, now_unix, parse_json_object, sandbox_of
from sandbox.streaming import DropConnection, HangResponse, Pace, StreamResponse, paced
from sandbox.trace import StreamTrace

_FINISH_REASONS = {"end": "stop", "stop_sequence": "stop", "max_tokens": "length"}
_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_STATUS_FAULTS = {
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (sandbox fault)."),
    529: (
        "server_error",
        "overloaded",
        "The server is overloaded, please try again later (sandbox fault).",
    ),
    500: ("server_error", None, _SERVER_ERROR + " (sandbox fault)"),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later (sandbox fault).",
    ),
}
_RETRY_HEADERS = {"retry-after": "1", "retry-after-ms": "1000"}
_FINGERPRINT = "fp_sandbox"


def error_response(exc: OpenAIError, *, headers: dict[str, str] | None = None) -> Response:
    """Return an error in OpenAI's body shape, with an x-request-id header."""
    error = {"message": exc.message, "type": exc.error_type, "param": exc.param, "code": exc.code}
    return JSONResponse(
        {"error": error}, exc.status, headers={"x-request-id": new_id("req_"), **(headers or {})}
    )


def _unauthorised(key: str) -> OpenAIError:
    shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else key
    return OpenAIError(
        401,
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions."""
    start = time.monotonic()
    try:
        return await _chat(request, start)
    except OpenAIError as exc:
        return error_response(exc)


def model_info(spec: ModelSpec) -> dict[str, object]:
    """One model in OpenAI's models-list shape."""
    return {"id": spec.id, "object": "model", "created": spec.created, "owned_by": "openai"}


def list_models(request: Request) -> Response:
    """GET /v1/models."""
    if not bearer_key(request):
        return error_response(_unauthorised(""))
    data = [model_info(m) for m in OPENAI_MODELS]
    return JSONResponse({"object": "list", "data": data}, headers={"x-request-id": new_id("req_")})


def get_model(request: Request) -> Response:
    """GET /v1/models/{model_id}."""
    if not bearer_key(request):
        return error_response(_unauthorised(""))
    model_id = request.path_params["model_id"]
    spec = openai_model(model_id)
    if spec is None:
        message = f"The model '{model_id}' does not exist"
        return error_response(OpenAIError(404, message, param="model", code="model_not_found"))
    return JSONResponse(model_info(spec), headers={"x-request-id": new_id("req_")})


async def _chat(request: Request, start: float) -> Response:
    sandbox = sandbox_of(request)
    key = bearer_key(request)
    if not key:
        raise _unauthorised("")
    raw = await request.body()
    try:
        body = parse_json_object(raw)
    except ValueError as exc:
        raise OpenAIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but "
            f"what was sent was not valid JSON.) Detail: {exc}",
        ) from exc
    prompt = parse_chat(body, max_context=sandbox.settings.max_context)
    max_tokens = parse_max_tokens(body, prompt)
    stops = stop_sequences(body)
    try:
        fault = detect(request.headers.get(FAULT_HEADER), prompt.question)
    except FaultSpecError as exc:
        raise OpenAIError(400, str(exc)) from exc
    if fault and fault.kind == "status" and sandbox.attempts.should_fail(fault, key, raw):
        error_type, code, message = _STATUS_FAULTS[fault.status]
        error = OpenAIError(fault.status, message, error_type=error_type, code=code)
        return error_response(error, headers=_RETRY_HEADERS if fault.status == 429 else None)
    if fault and fault.kind == "hang":
        return HangResponse()
    cache_key = body.get("prompt_cache_key")
    scope = (key, prompt.model.id, cache_key if isinstance(cache_key, str) else "")
    cached = sandbox.openai_cache.apply(scope=scope, tokens=prompt.token_ids)
    reply = replies.compose(
        seed=prompt.seed,
        question=prompt.question,
        model=prompt.model.id,
        message_count=prompt.message_count,
        input_tokens=prompt.prompt_tokens,
        max_tokens=max_tokens,
        exact_tokens=replies.requested_length(
            request.headers.get(replies.REPLY_HEADER), prompt.question
        ),
        stop_sequences=stops,
    )
    pace = sandbox.pace(start=start, fault=fault)
    usage = _usage(prompt, cached, reply.output_tokens)
    headers = {"x-request-id": new_id("req_"), "openai-processing-ms": "1"}
    completion_id = new_id("chatcmpl-")
    if body.get("stream"):
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        trace = None
        if sandbox.trace is not None:
            trace = sandbox.trace.open(
                id=completion_id,
                provider="openai",
                model=prompt.model.id,
                question=prompt.question,
                body=body,
            )
        chunks = _chunks(
            completion_id, prompt, reply, pace, fault, usage if include_usage else None, trace
        )
        return StreamResponse(chunks, headers={**headers, "cache-control": "no-cache"})
    if fault and fault.kind == "error":
        return error_response(OpenAIError(500, _SERVER_ERROR, error_type="server_error"))
    if fault and fault.kind == "drop":
        return StreamResponse(_dropped(), headers=headers, media_type="application/json")
    await pace.wait(max(0, reply.output_tokens - (reply.pieces[-1].tokens if reply.pieces else 0)))
    completion = {
        "id": completion_id,
        "object": "chat.completion",
        "created": now_unix(),
        "model": prompt.model.id,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": reply.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": _FINISH_REASONS[reply.stop],
            }
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": _FINGERPRINT,
    }
    return JSONResponse(completion, headers=headers)


def _usage(prompt: ChatPrompt, cached: int, completion_tokens: int) -> dict[str, object]:
    # prompt_tokens includes the cached tokens, as on the real API.
    return {
        "prompt_tokens": prompt.prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt.prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


async def _dropped() -> AsyncIterator[bytes]:
    raise DropConnection
    yield b""  # pragma: no cover - makes this an async generator


async def _chunks(
    completion_id: str,
    prompt: ChatPrompt,
    reply: replies.Reply,
    pace: Pace,
    fault: Fault | None,
    usage: dict[str, object] | None,
    trace: StreamTrace | None = None,
) -> AsyncIterator[bytes]:
    created = now_unix()
    # With include_usage every chunk carries "usage": null until the last one, as on the real API.
    extra: dict[str, object] = {"usage": None} if usage is not None else {}

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": prompt.model.id,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [choice],
            **extra,
        }
        return b"data: " + orjson.dumps(data) + b"\n\n"

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    sent = 0
    async for piece in paced(reply.pieces, pace):
        if fault and fault.kind in ("error", "drop") and sent >= fault.after:
            break
        data = chunk({"content": piece.text})
        if trace is not None:
            trace.record(piece)
        yield data
        sent += piece.tokens
    if fault and fault.kind == "drop":
        raise DropConnection
    if fault and fault.kind == "error":
        error = {"message": _SERVER_ERROR, "type": "server_error", "param": None, "code": None}
        yield b"data: " + orjson.dumps({"error": error}) + b"\n\n"
        return
    yield chunk({}, _FINISH_REASONS[reply.stop])
    if usage is not None:
        last = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": prompt.model.id,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [],
            "usage": usage,
        }
        yield b"data: " + orjson.dumps(last) + b"\n\n"
    yield b"data: [DONE]\n\n"
