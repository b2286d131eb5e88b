"""Timeouts shared by the adapters: the first token, then the silence between lines.

The SDK's own timeouts (connect, read) bound each socket operation; these bound what a person
waits for. They apply only while the adapter waits for the provider, never while the consumer
holds a yielded event, so a slow consumer never trips them.

A Watchdog rather than `asyncio.timeout` around each line: an SSE event is two or three lines,
and a fresh timeout per line cost ~13 µs per chunk, as much as parsing it (bench/README.md).
The watchdog keeps one timer per stream, re-armed lazily; per line it costs a clock read.
"""

from __future__ import annotations

import asyncio

from django.conf import settings


class Watchdog:
    """Cancels the stream's task when a wait for the provider outlasts its deadline."""

    __slots__ = ("deadline", "expired", "first_token", "handle", "idle", "loop", "task", "waiting")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.first_token = float(settings.LLM_FIRST_TOKEN_TIMEOUT)
        self.idle = float(settings.LLM_IDLE_TIMEOUT)
        self.deadline = self.loop.time() + self.first_token
        self.waiting = False
        self.expired = False
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, started: bool) -> None:
        """Call before each wait: the first-token deadline, then now + idle once started."""
        if started:
            self.deadline = self.loop.time() + self.idle
        self.waiting = True
        handle = self.handle
        if handle is None or handle.when() > self.deadline:
            # No timer, or one set for a later deadline (the first token's, when idle is shorter).
            if handle is not None:
                handle.cancel()
            self.handle = self.loop.call_at(self.deadline, self._fire)

    def _fire(self) -> None:
        self.handle = None
        if not self.waiting:
            return  # the consumer holds an event; the next wait re-arms
        if self.loop.time() < self.deadline:
            self.handle = self.loop.call_at(self.deadline, self._fire)
            return
        self.expired = True
        assert self.task is not None
        self.task.cancel()

    def timed_out(self) -> bool:
        """After a CancelledError: True (and the cancellation withdrawn) when it was ours."""
        return self.expired and self.task is not None and self.task.uncancel() == 0

    def message(self, label: str, *, started: bool) -> str:
        """What the person is told."""
        if started:
            return f"{label} stopped sending for {self.idle:g} s during the answer."
        return f"{label} did not start answering within {self.first_token:g} s."

    def close(self) -> None:
        """Stop the timer (the stream ended, failed or was abandoned)."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
