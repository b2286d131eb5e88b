"""How the project's errors look on the OpenAI-compatible door: a status, a type, a code."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Final

import orjson
from django.http import HttpResponse

from chat import errors

# code -> (HTTP status, OpenAI error type). Codes not listed are 400 invalid_request_error.
STATUS: Final[dict[str, tuple[int, str]]] = {
    "invalid_api_key": (401, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "not_found": (404, "invalid_request_error"),
    "budget_exceeded": (429, "insufficient_quota"),
    "rate_limited": (429, "rate_limit_error"),
    "too_many_streams": (429, "rate_limit_error"),
    "not_a_member": (403, "permission_error"),
    "budget_unavailable": (503, "server_error"),
    "provider_overloaded": (503, "server_error"),
    "provider_unavailable": (503, "server_error"),
    "provider_timeout": (503, "server_error"),
    "provider_auth_failed": (503, "server_error"),
    "stream_interrupted": (503, "server_error"),
}
# A model that is unknown, unconfigured or outside the user's plan: OpenAI's 404.
MODEL_CODES: Final = frozenset({"model_unavailable", "model_not_allowed"})


def wire_code(exc: errors.ChatError) -> str:
    """The code a program sees: ours, except OpenAI's own for an unusable model."""
    return "model_not_found" if exc.code in MODEL_CODES else exc.code


def error_body(message: str, code: str, *, param: str | None = None) -> dict[str, Any]:
    _, kind = STATUS.get(code, (400, "invalid_request_error"))
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def retry_after(exc: errors.ChatError) -> int | None:
    """Whole seconds until a refused request may succeed (rate limit, or the budget's reset)."""
    seconds = exc.extra.get("retry_after", getattr(exc, "retry_after", None))
    resets_at = exc.extra.get("resets_at")
    if seconds is None and isinstance(resets_at, dt.datetime):
        seconds = (resets_at - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds is None:
        return 1 if exc.code == "too_many_streams" else None
    return max(1, math.ceil(seconds))


def error_response(
    message: str, code: str, *, param: str | None = None, retry: int | None = None
) -> HttpResponse:
    status, _ = STATUS.get(code, (400, "invalid_request_error"))
    response = HttpResponse(
        orjson.dumps(error_body(message, code, param=param)),
        status=status,
        content_type="application/json",
    )
    if retry is not None:
        response["retry-after"] = str(retry)
    return response


def response_for(exc: errors.ChatError) -> HttpResponse:
    """The OpenAI-shaped error response for one of the project's errors."""
    return error_response(
        exc.message, wire_code(exc), param=exc.extra.get("param"), retry=retry_after(exc)
    )
