"""Pacing and the raw ASGI responses the sandbox needs: SSE streams, hangs, dropped connections."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from sandbox.tokens import Piece

HANG_LIMIT_SECONDS = 600.0
# Pacing sleeps only when ahead of schedule by more than this; tiny sleeps cost more than they pace.
_MIN_SLEEP_SECONDS = 0.002


class DropConnection(Exception):
    """Raised inside the send loop so the server aborts the response mid-body."""


class _QuietDrops(logging.Filter):
    """Keeps uvicorn from logging a traceback for every connection dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


def quiet_dropped_connections() -> None:
    """Install the log filter once on uvicorn's error logger."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


@dataclass(frozen=True, slots=True)
class Pace:
    """When tokens are due: the first after ttft, then one every 1/tokens_per_second."""

    start: float
    ttft_seconds: float
    tokens_per_second: float

    def due(self, tokens_before: int) -> float:
        """Monotonic time at which the piece after tokens_before tokens is due."""
        return self.start + self.ttft_seconds + tokens_before / self.tokens_per_second

    async def wait(self, tokens_before: int) -> None:
        """Sleep until the next piece is due."""
        delay = self.due(tokens_before) - time.monotonic()
        if delay > _MIN_SLEEP_SECONDS:
            await anyio.sleep(delay)


async def paced(pieces: Iterable[Piece], pace: Pace) -> AsyncIterator[Piece]:
    """Yield pieces as they come due."""
    sent = 0
    for piece in pieces:
        await pace.wait(sent)
        sent += piece.tokens
        yield piece


class StreamResponse(Response):
    """Streams chunks; stops when the client leaves; aborts the connection on DropConnection."""

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        headers: Mapping[str, str],
        media_type: str = "text/event-stream; charset=utf-8",
        status_code: int = 200,
    ) -> None:
        self.chunks = body
        self.status_code = status_code
        self.media_type = media_type
        self.init_headers(dict(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        dropped = False

        async def stream() -> None:
            nonlocal dropped
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            try:
                async with aclosing(self.chunks) as chunks:
                    async for chunk in chunks:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except DropConnection:
                dropped = True
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(_until_disconnect, receive, group.cancel_scope)
            await stream()
        if dropped:
            # Raised outside the task group so the server sees it as is and aborts the body.
            raise DropConnection("dropped on purpose (sandbox fault)")


class HangResponse(Response):
    """Sends nothing until the client disconnects (or a long safety limit passes)."""

    def __init__(self) -> None:
        self.status_code = 504
        self.init_headers({})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with anyio.move_on_after(HANG_LIMIT_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await send({"type": "http.response.start", "status": 504, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
