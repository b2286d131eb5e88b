"""The JSON websocket API door (/ws/v1/chat/): an API key on the handshake, JSON frames.

One turn at a time per socket. The socket owns its turn: a `stop` frame, or the program
going away, stops it, and the pipeline settles what it used. Frames are in docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from budgets.services import budget_state
from chat import errors
from chat.api import ws_wire as wire
from chat.api.ws_frames import SendFrame, StopFrame, parse_api_frame
from chat.services import api_conversations
from chat.services.api_keys import aapi_key_authenticate, bearer_key
from chat.services.events import Delta, Failed, Finished, Notice, Retrying, Started
from chat.streaming import DeltaCoalescer

CLOSE_UNAUTHENTICATED = 4401


class ApiChatConsumer(AsyncWebsocketConsumer):
    """Runs the turns a program sends and streams their events back as JSON frames."""

    user_id: int | None = None
    turn: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers") or ())
        self.user_id = await aapi_key_authenticate(bearer_key(headers.get(b"authorization")))
        await self.accept()
        if self.user_id is None:
            # Accepted first so that the program reads the code, not a bare HTTP 403.
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        if self.turn is not None:
            self.turn.cancel()  # nobody is listening any more: stop and settle

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user_id is None:
            return  # refused at the handshake; the socket is closing
        try:
            frame = parse_api_frame(text_data, bytes_data)
            if isinstance(frame, StopFrame):
                if self.turn is not None:
                    self.turn.cancel()
                return
            if self.turn is not None and not self.turn.done():
                raise errors.InvalidInput("Wait for the answer to finish, or stop it.", code="busy")
            events, started = await self.begin(frame)
        except errors.ChatError as exc:
            await self.send_frame(wire.error(exc))
            return
        await self.send_frame(wire.started(started))
        self.turn = asyncio.create_task(self.relay(events, started))

    async def begin(self, frame: SendFrame) -> tuple[Any, Started]:
        """Find or make the conversation and start the turn (undone if refused)."""
        conversation, undo = await sync_to_async(api_conversations.api_conversation_for_turn)(
            user_id=self.user_id, conversation_id=frame.conversation_id, system=frame.system
        )
        return await api_conversations.api_turn_begin(
            user_id=self.user_id,  # type: ignore[arg-type]
            conversation_id=conversation.id,
            undo=undo,
            text=frame.message,
            model=frame.model,
            max_tokens=frame.max_tokens,
            temperature=frame.temperature,
        )

    async def relay(self, events: Any, started: Started) -> None:
        """Send a turn's events as frames, deltas coalesced on CHAT_FRAME_INTERVAL."""
        coalescer = DeltaCoalescer(self.send_delta, settings.CHAT_FRAME_INTERVAL)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, Delta):
                        await coalescer.add(event.text)
                        continue
                    await coalescer.flush()
                    await self.send_frame(await self.frame_for(event))
        except asyncio.CancelledError:
            coalescer.cancel()
            message_id = started.assistant_message_id
            await self.send_frame({"type": "stopped", "message_id": message_id})

    async def frame_for(self, event: object) -> dict[str, Any]:
        if isinstance(event, Retrying):
            return wire.retrying(event)
        if isinstance(event, Notice):
            return wire.notice(event)
        state = await budget_state(user_id=self.user_id)  # type: ignore[arg-type]
        if isinstance(event, Finished):
            return wire.finished(event, state)
        assert isinstance(event, Failed)
        return wire.failed(event, state)

    async def send_delta(self, text: str) -> None:
        await self.send_frame({"type": "delta", "text": text})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the program may have gone away
            await self.send(text_data=wire.dumps(frame))
