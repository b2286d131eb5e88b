"""The browser door: a websocket per open conversation page, speaking htmx fragments.

The socket starts and stops generations and shows them; it does not own them. Every tab
on a conversation (in any process) follows the generation's Redis Stream, and a socket
that (re)connects first makes the page whole again from the database and the stream.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from budgets.services import budget_state
from chat import errors, fragments, selectors, views_billing
from chat.frames import parse_browser_frame
from chat.services import conversations, generations

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ChatConsumer(AsyncWebsocketConsumer):
    """Starts, stops and shows the generations of one conversation."""

    open = False
    follower: asyncio.Task[None] | None = None
    following: int | None = None

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
        self.group = generations.conversation_group(self.conversation.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.open = True
        await self.accept()
        await self.resync()

    async def disconnect(self, code: int) -> None:
        # Closing the tab does not stop the generation: only the Stop button does.
        self.open = False
        if self.follower is not None:
            self.follower.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            frame = parse_browser_frame(text_data, bytes_data)
            if frame.action == "resync":
                await self.resync()
                return
            active = await generations.active_generation(self.conversation.id)
            if frame.action == "stop":
                if active is not None:
                    await generations.generation_stop(message_id=active)
                return
            if active is not None:
                raise errors.InvalidInput("Wait for the answer to finish, or stop it.", code="busy")
            await generations.generation_start(
                user_id=self.scope["user"].id,
                conversation_id=self.conversation.id,
                text=frame.message,
                mode=frame.action,
                model=frame.model or None,
                max_tokens=frame.max_tokens,
            )
        except errors.ChatError as exc:
            await self.send_html(
                fragments.notice(exc.message, resets_at=exc.extra.get("resets_at"))
            )
            if isinstance(exc, errors.Refused):
                await self.send_budget()

    async def generation_started(self, event: dict[str, int]) -> None:
        """Group notice: a generation began in this conversation (from any tab or process)."""
        self.follow(event["message_id"], after="0-0")

    async def resync(self) -> None:
        """Make the page whole: every stored message, the live answer so far, then follow it."""
        # Stop showing first, so no frame lands between the snapshot and the new follower.
        if self.follower is not None:
            self.follower.cancel()
            self.follower = self.following = None
        live_id = await generations.active_generation(self.conversation.id)
        snapshot = await generations.generation_snapshot(live_id) if live_id else None
        live = snapshot is not None and snapshot.ended is None
        html = await database_sync_to_async(fragments.conversation_resync)(
            self.conversation,
            live_id=live_id if live else None,
            live_text=snapshot.text if snapshot else "",
        )
        await self.send_html(html)
        if live:
            self.follow(snapshot.message_id, after=snapshot.last_id)  # type: ignore[union-attr]

    def follow(self, message_id: int, *, after: str) -> None:
        """Show a generation's frames from `after` on (once per generation)."""
        if self.following == message_id and self.follower and not self.follower.done():
            return
        if self.follower is not None:
            self.follower.cancel()
        self.following = message_id
        self.follower = asyncio.create_task(self._show(message_id, after))

    async def _show(self, message_id: int, after: str) -> None:
        try:
            async for frame in generations.generation_follow(message_id, after=after):
                if frame["type"] == "delta":
                    await self.send_html(fragments.delta(message_id, frame["text"]))
                else:
                    await self.send_html(fragments.for_frame(frame))
                if frame["type"] in generations.TERMINAL:
                    await self.send_budget()
        except Exception:
            logger.exception("showing generation %s failed", message_id)

    async def send_budget(self) -> None:
        """The meters (own and billed team's) and the conversation's total, after a turn ends
        or is refused."""
        user_id = self.scope["user"].id
        state = await budget_state(user_id=user_id)
        totals = await database_sync_to_async(selectors.conversation_totals)(
            conversation_id=self.conversation.id
        )
        team_meter = await database_sync_to_async(views_billing.team_meter_oob)(
            user_id=user_id, conversation_id=self.conversation.id
        )
        await self.send_html(fragments.budget_and_totals(state, totals) + team_meter)

    async def send_html(self, html: str) -> None:
        """Send a fragment if the page is still connected."""
        if self.open:
            await self.send(text_data=html)
