"""The browser door: a websocket per open conversation page, speaking htmx fragments."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chat import errors, fragments
from chat.frames import parse_browser_frame
from chat.services import conversations
from chat.services.turns import Delta, Failed, Finished, Started, run_turn
from chat.streaming import DeltaCoalescer

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ChatConsumer(AsyncWebsocketConsumer):
    """Runs turns for one conversation and streams their events as HTML swaps."""

    generation: asyncio.Task[None] | None = None
    open = False

    async def connect(self) -> None:
        user = self.scope["user"]
        if not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        try:
            self.conversation = await database_sync_to_async(
                conversations.conversation_get_for_user
            )(user_id=user.id, conversation_id=conversation_id)
        except errors.NotFound:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.open = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        # The generation belongs to the conversation, not the socket: it runs on and
        # stores its answer; only the Stop button cancels it.
        self.open = False

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_browser_frame(text_data, bytes_data)
        except errors.ChatError as exc:
            await self.send_html(fragments.notice(exc.message))
            return
        if frame.action == "stop":
            if self.generation is not None and not self.generation.done():
                self.generation.cancel()
            return
        if self.generation is not None and not self.generation.done():
            await self.send_html(fragments.notice("Wait for the answer to finish, or stop it."))
            return
        self.generation = asyncio.create_task(self.generate(frame.message, frame.model))

    async def generate(self, text: str, model: str) -> None:
        """Drive one turn, translating its events into fragments."""
        coalescer: DeltaCoalescer | None = None
        started: Started | None = None
        shown: list[str] = []
        try:
            async with contextlib.aclosing(
                run_turn(
                    user_id=self.scope["user"].id,
                    conversation_id=self.conversation.id,
                    text=text,
                    model=model or None,
                )
            ) as events:
                async for event in events:
                    if isinstance(event, Delta):
                        shown.append(event.text)
                        await coalescer.add(event.text)  # type: ignore[union-attr]
                    elif isinstance(event, Started):
                        started = event
                        coalescer = self._coalescer(event.assistant_message_id)
                        await self.send_html(fragments.turn_started(event))
                    elif isinstance(event, Finished | Failed):
                        coalescer.cancel()  # type: ignore[union-attr]
                        await self.send_html(fragments.turn_ended(event, model=started.model))  # type: ignore[union-attr]
        except errors.ChatError as exc:
            await self.send_html(fragments.notice(exc.message))
        except asyncio.CancelledError:
            if coalescer is not None:
                coalescer.cancel()
            if started is not None:
                stopped = fragments.turn_stopped(
                    started.assistant_message_id, "".join(shown), model=started.model
                )
                await self.send_html(stopped)
        except Exception:
            logger.exception("turn failed unexpectedly")
            await self.send_html(fragments.notice("Something went wrong on our side."))

    def _coalescer(self, message_id: int) -> DeltaCoalescer:
        async def flush(text: str) -> None:
            await self.send_html(fragments.delta(message_id, text))

        return DeltaCoalescer(flush, settings.CHAT_FRAME_INTERVAL)

    async def send_html(self, html: str) -> None:
        """Send a fragment if the page is still connected."""
        if self.open:
            await self.send(text_data=html)
