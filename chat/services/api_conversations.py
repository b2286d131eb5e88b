"""Conversations of the APIs for programs, stored like any other and shown in the pages.

The OpenAI-compatible API makes one per request; the websocket API makes one or goes on
with one. A refused turn leaves nothing behind: what the door prepared is undone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from chat.models import Conversation, Message
from chat.services.conversations import (
    conversation_get_for_user,
    conversation_set_system_prompt,
    title_from_text,
)
from chat.services.events import Started, TurnEvent
from chat.services.turns import run_turn


@transaction.atomic
def api_conversation_create(
    *, user_id: int, system: str, history: tuple[tuple[str, str], ...], text: str
) -> Conversation:
    """A conversation holding a request's system prompt and earlier turns (not the last)."""
    first_user = next((content for role, content in history if role == "user"), text)
    conversation = Conversation.objects.create(
        user_id=user_id, system_prompt=system, title=title_from_text(first_user)
    )
    Message.objects.bulk_create(
        Message(conversation=conversation, role=role, content=content) for role, content in history
    )
    return conversation


def api_conversation_for_turn(
    *, user_id: int, conversation_id: str | None, system: str | None
) -> tuple[Conversation, Callable[[], object]]:
    """The conversation a websocket turn goes to (a new one without an id), with its system
    prompt set, and how to undo that if the turn is refused."""
    if conversation_id is None:
        conversation = Conversation.objects.create(user_id=user_id, system_prompt=system or "")
        return conversation, conversation.delete
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    previous = conversation.system_prompt
    if system is None or system == previous:
        return conversation, lambda: None
    conversation_set_system_prompt(
        user_id=user_id, conversation_id=conversation.id, system_prompt=system
    )

    def undo() -> None:
        Conversation.objects.filter(pk=conversation.pk).update(system_prompt=previous)

    return conversation, undo


async def api_turn_begin(
    *, user_id: int, conversation_id: uuid.UUID, undo: Callable[[], object], **turn: Any
) -> tuple[AsyncIterator[TurnEvent], Started]:
    """Start a turn and wait for it to be stored; a refusal undoes what the door prepared."""
    events = run_turn(user_id=user_id, conversation_id=conversation_id, **turn)
    try:
        started = await anext(events)
    except BaseException:
        await sync_to_async(undo)()
        raise
    assert isinstance(started, Started)
    return events, started
