"""The API paths' Django (chat/api/middleware.py): the site's headers and checks, no threads."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatsite import asgi


async def respond(app: Any, path: str, *, method: str = "GET", host: bytes = b"testserver"):
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", host)], "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }  # fmt: skip
    messages: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return messages[0]["status"], sorted(messages[0]["headers"]), body


@pytest.mark.parametrize(
    ("path", "method", "host"),
    [
        ("/v1/models", "GET", b"testserver"),  # no key: 401
        ("/v1/chat/completions", "GET", b"testserver"),  # 405
        ("/v1/nope", "GET", b"testserver"),  # 404
        ("/v1/models", "GET", b"evil.example"),  # not in ALLOWED_HOSTS: 400
    ],
)
async def test_api_paths_answer_exactly_as_through_the_site_middleware(path, method, host):
    site = await respond(asgi.django_asgi_app, path, method=method, host=host)
    api = await respond(asgi.django_api_app, path, method=method, host=host)
    assert api == site
    if api[0] != 400:  # refused before the header middleware, on both
        headers = dict(api[1])
        assert headers[b"X-Frame-Options"] == b"DENY"
        assert headers[b"X-Content-Type-Options"] == b"nosniff"


def test_api_middleware_runs_its_hooks_on_the_loop():
    from django.conf import settings
    from django.utils.module_loading import import_string

    from chat.api.middleware import OnLoop

    for path in settings.CHAT_API_MIDDLEWARE:
        assert import_string(path).__acall__ is OnLoop.__acall__
