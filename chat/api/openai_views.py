"""The OpenAI-compatible door: /v1/models and /v1/chat/completions, for any OpenAI SDK.

Each completion request becomes a conversation of the key's user (its system prompt and
earlier turns stored, the last user message sent through the turn pipeline), so it shows
in the user's pages. A refused request leaves nothing behind and costs nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from budgets import selectors as budget_selectors
from chat import errors
from chat.api import openai_wire as wire
from chat.api.errors import error_body, error_response, response_for, wire_code
from chat.api.openai_request import CompletionRequest, parse_completion_request
from chat.providers import catalog
from chat.services import api_conversations
from chat.services.api_keys import aapi_key_authenticate, bearer_key
from chat.services.conversations import NewConversation
from chat.services.turns import Delta, Failed, Finished, Started

UNAUTHORIZED = (
    "Incorrect or revoked API key. Send `Authorization: Bearer sk-chat-...`; "
    "create a key at /settings/keys/."
)


def _body_too_large(length: int) -> HttpResponse:
    limit = settings.CHAT_API_MAX_BODY_BYTES
    message = f"The request body is {length:,} bytes; the limit is {limit:,}."
    return error_response(message, "invalid_request")


async def _authenticate(request: HttpRequest) -> int | None:
    return await aapi_key_authenticate(bearer_key(request.headers.get("Authorization")))


def _unauthorized() -> HttpResponse:
    return error_response(UNAUTHORIZED, "invalid_api_key")


async def _models_for(user_id: int) -> dict[str, dict[str, object]]:
    """The models the user may use, by id, as OpenAI model objects."""
    limits = await sync_to_async(budget_selectors.limits_for_user)(user_id=user_id)
    return {
        model.id: {"id": model.id, "object": "model", "created": 0, "owned_by": model.provider}
        for model in catalog.available_models()
        if limits.allows(model.id)
    }


def _json(payload: object) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), content_type="application/json")


@csrf_exempt
@require_GET
async def models(request: HttpRequest) -> HttpResponse:
    """The models the key's user may use."""
    user_id = await _authenticate(request)
    if user_id is None:
        return _unauthorized()
    return _json({"object": "list", "data": list((await _models_for(user_id)).values())})


@csrf_exempt
@require_GET
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    """One model the key's user may use; any other id is OpenAI's 404 model_not_found."""
    user_id = await _authenticate(request)
    if user_id is None:
        return _unauthorized()
    model = (await _models_for(user_id)).get(model_id)
    if model is None:
        message = f"The model `{model_id[:100]}` does not exist or you do not have access to it."
        return error_response(message, "model_not_found", param="model")
    return _json(model)


@csrf_exempt
@require_POST
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """One answer, streamed as SSE chunks or returned whole as a chat.completion."""
    user_id = await _authenticate(request)
    if user_id is None:
        return _unauthorized()
    # Checked before Django reads the body by chat.api.body_limit; this covers chunked bodies.
    if len(request.body) > settings.CHAT_API_MAX_BODY_BYTES:
        return _body_too_large(len(request.body))
    try:
        body = parse_completion_request(request.body)
        catalog.resolve(body.model)  # an unknown model is refused before anything is stored
        turn, started = await _start(user_id, body)
    except errors.ChatError as exc:
        return response_for(exc)
    completion_id = f"chatcmpl-{started.assistant_message_id}"
    if body.stream:
        response = StreamingHttpResponse(
            _stream(turn, body, completion_id=completion_id, model=started.model),
            content_type="text/event-stream",
        )
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    return await _whole(turn, completion_id=completion_id, model=started.model)


async def _start(user_id: int, body: CompletionRequest) -> tuple[AsyncIterator[object], Started]:
    """Start the turn, which stores the request's conversation; on a refusal, store nothing."""
    return await api_conversations.api_turn_begin(
        user_id=user_id,
        conversation=NewConversation(system=body.system, history=body.history),
        team=body.team,
        text=body.text,
        model=body.model,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        stop=body.stop,
    )


async def _stream(
    turn: AsyncIterator[object], body: CompletionRequest, *, completion_id: str, model: str
) -> AsyncIterator[bytes]:
    """SSE lines; a client that goes away cancels the answer (the turn settles it)."""
    chunks = wire.ChunkWriter(completion_id=completion_id, model=model)
    yield chunks.role()
    async with contextlib.aclosing(turn):  # type: ignore[type-var]
        async for event in turn:
            if isinstance(event, Delta):
                yield chunks.delta(event.text)
            elif isinstance(event, Finished):
                yield chunks.finish(event.stop_reason)
                if body.include_usage:
                    yield chunks.usage(event.usage, event.cost_micros)
            elif isinstance(event, Failed):
                yield wire.sse(error_body(event.message, event.code))
    yield wire.DONE


async def _whole(turn: AsyncIterator[object], *, completion_id: str, model: str) -> HttpResponse:
    # Read the turn to its end: closing it early would count the finished answer as stopped.
    end: Finished | Failed | None = None
    async with contextlib.aclosing(turn):  # type: ignore[type-var]
        async for event in turn:
            if isinstance(event, Finished | Failed):
                end = event
    if isinstance(end, Finished):
        payload = wire.completion(
            completion_id=completion_id,
            model=model,
            content=end.content,
            stop_reason=end.stop_reason,
            usage=end.usage,
            cost=end.cost_micros,
        )
        return HttpResponse(orjson.dumps(payload), content_type="application/json")
    if isinstance(end, Failed):
        return error_response(end.message, end.code)
    failure = errors.Unavailable("The answer ended without finishing; try again.")
    return error_response(failure.message, wire_code(failure))
