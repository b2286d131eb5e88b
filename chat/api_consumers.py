"""The JSON websocket API door (/ws/v1/chat/): an API key on the handshake, JSON frames.

One answer at a time per socket. Each answer runs as a generation (chat.services.generations),
like the browser's: the socket follows its Redis Stream, and a `stop` frame reaches it in
whichever process runs it (a `stop` naming a conversation stops that conversation's answer
from any socket of the same user). The program going away stops its answer; the pipeline
settles what it used. Frames are in docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from budgets.services import budget_state
from chat import errors
from chat.api import ws_wire as wire
from chat.api.ws_frames import SendFrame, StopFrame, parse_api_frame
from chat.services import api_conversations, generations
from chat.services.api_keys import aapi_key_authenticate, bearer_key
from chat.services.events import Started

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401


class ApiChatConsumer(AsyncWebsocketConsumer):
    """Starts the answers a program asks for and sends their frames back as JSON."""

    user_id: int | None = None
    message_id: int | None = None  # this socket's answer, while it runs
    follower: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        headers = dict(self.scope.get("headers") or ())
        self.user_id = await aapi_key_authenticate(bearer_key(headers.get(b"authorization")))
        await self.accept()
        if self.user_id is None:
            # Accepted first so that the program reads the code, not a bare HTTP 403.
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def disconnect(self, code: int) -> None:
        if self.follower is not None:
            self.follower.cancel()
        if self.message_id is not None:  # nobody is listening any more: stop and settle
            await generations.generation_stop(message_id=self.message_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user_id is None:
            return  # refused at the handshake; the socket is closing
        try:
            frame = parse_api_frame(text_data, bytes_data)
            if isinstance(frame, StopFrame):
                await self.stop(frame)
                return
            if self.message_id is not None:
                raise errors.InvalidInput("Wait for the answer to finish, or stop it.", code="busy")
            started = await self.begin(frame)
        except errors.ChatError as exc:
            await self.send_frame(wire.error(exc))
            return
        self.message_id = started.assistant_message_id
        await self.send_frame(wire.started(started))
        self.follower = asyncio.create_task(self.relay(started.assistant_message_id))

    async def begin(self, frame: SendFrame) -> Started:
        """Find or make the conversation and start the answer (undone if refused)."""
        conversation, undo = await sync_to_async(api_conversations.api_conversation_for_turn)(
            user_id=self.user_id,
            conversation_id=frame.conversation_id,
            system=frame.system,
            team=frame.team,
        )
        return await api_conversations.api_generation_begin(
            user_id=self.user_id,  # type: ignore[arg-type]
            conversation_id=conversation.id,
            undo=undo,
            text=frame.message,
            model=frame.model,
            max_tokens=frame.max_tokens,
            temperature=frame.temperature,
        )

    async def stop(self, frame: StopFrame) -> None:
        if frame.conversation_id is not None:
            await api_conversations.api_generation_stop(
                user_id=self.user_id,  # type: ignore[arg-type]
                conversation_id=frame.conversation_id,
            )
        elif self.message_id is not None:
            await generations.generation_stop(message_id=self.message_id)

    async def relay(self, message_id: int) -> None:
        """Send the answer's frames from its stream, in order, until its final one."""
        try:
            async for frame in generations.generation_follow(message_id):
                if frame["type"] in generations.TERMINAL:
                    self.message_id = None  # the program may send its next message at once
                state = None
                if frame["type"] in wire.BUDGETED:
                    state = await budget_state(user_id=self.user_id)  # type: ignore[arg-type]
                out = wire.from_generation(frame, state)
                if out is not None:
                    await self.send_frame(out)
        except Exception:  # Redis went away: the answer goes on, this socket cannot show it
            logger.exception("relaying generation %s failed", message_id)
            self.message_id = None
            failure = errors.StreamInterrupted(
                "Lost track of the answer; it is kept in the conversation."
            )
            await self.send_frame({**wire.error(failure), "message_id": message_id})

    async def send_frame(self, frame: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the program may have gone away
            await self.send(text_data=wire.dumps(frame))
