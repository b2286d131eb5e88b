"""Refuse an over-long API request body from its Content-Length, before the app reads it.

Django's ASGI handler reads (and spools) the whole body before any view runs, so the
check has to sit in front of it. Bodies without a Content-Length (chunked) are measured
by the view once read. Put a proxy limit (nginx `client_max_body_size`) in front as well:
Daphne itself buffers a request before handing it on.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings

from chat.api.errors import error_body

API_PREFIX = "/v1/"


def too_large(length: int) -> bytes | None:
    """The error body when `length` is over the limit, else None."""
    limit = settings.CHAT_API_MAX_BODY_BYTES
    if length <= limit:
        return None
    message = f"The request body is {length:,} bytes; the limit is {limit:,}."
    return orjson.dumps(error_body(message, "invalid_request"))


class BodyLimitMiddleware:
    """ASGI middleware for the API paths: 400 at once when Content-Length is over the limit."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            length = dict(scope.get("headers") or ()).get(b"content-length", b"")
            body = too_large(int(length)) if length.isdigit() else None
            if body is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 400,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
