"""Coalesce text deltas into frames: the first goes out at once, the rest on a timer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class DeltaCoalescer:
    """Buffers deltas and flushes them at most once per `interval` seconds.

    A frame per token would cost the browser a DOM swap and the server a websocket
    write per token; a short timer keeps the stream smooth at a fraction of the cost.
    """

    def __init__(self, flush: Callable[[str], Awaitable[None]], interval: float) -> None:
        self._flush = flush
        self._interval = interval
        self._buffer: list[str] = []
        self._last_sent = 0.0
        self._timer: asyncio.Task[None] | None = None

    async def add(self, text: str) -> None:
        """Send now if a frame is due, otherwise buffer until the timer fires."""
        self._buffer.append(text)
        if self._timer is not None:
            return
        wait = self._last_sent + self._interval - time.monotonic()
        if wait <= 0:
            await self.flush()
        else:
            self._timer = asyncio.create_task(self._flush_later(wait))

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None
        await self.flush()

    async def flush(self) -> None:
        """Send whatever is buffered now."""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        self._last_sent = time.monotonic()
        await self._flush(text)

    def cancel(self) -> None:
        """Drop the timer (the stream ended or the socket closed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
