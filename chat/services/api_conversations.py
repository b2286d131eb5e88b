"""Conversations of the APIs for programs, stored like any other and shown in the pages.

The OpenAI-compatible API makes one per request, stored with its turn, and runs the turn
in the request; the websocket API makes one or goes on with one and runs the turn as a
generation (so a stop reaches it from any process). A refused turn leaves nothing behind:
what the door prepared is undone.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async

from chat import errors
from chat.models import Conversation
from chat.services import billing, generations
from chat.services.conversations import (
    NewConversation,
    conversation_get_for_user,
    conversation_set_billing_team,
    conversation_set_system_prompt,
)
from chat.services.events import Started, TurnEvent
from chat.services.turns import run_turn


def api_conversation_for_turn(
    *,
    user_id: int,
    conversation_id: str | None,
    system: str | None,
    team: object = billing.UNSET,
) -> tuple[Conversation, Callable[[], object]]:
    """The conversation a websocket turn goes to (a new one without an id), with its system
    prompt and billing team set, and how to undo that if the turn is refused.

    A new conversation bills `team` if given, else the user's first team; an existing one
    changes its billing team only when `team` is given. A team the user is not in is refused
    before anything is stored or changed.
    """
    if conversation_id is None:
        team_id = billing.billing_team_for_new(user_id=user_id, team=team)
        conversation = Conversation.objects.create(
            user_id=user_id, system_prompt=system or "", billing_team_id=team_id
        )
        return conversation, conversation.delete
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    previous = {"system_prompt": conversation.system_prompt}
    previous["billing_team_id"] = conversation.billing_team_id
    if team is not billing.UNSET:
        conversation = conversation_set_billing_team(
            user_id=user_id, conversation_id=conversation.id, team=team
        )
    if system is not None and system != previous["system_prompt"]:
        conversation_set_system_prompt(
            user_id=user_id, conversation_id=conversation.id, system_prompt=system
        )

    def undo() -> None:
        Conversation.objects.filter(pk=conversation.pk).update(**previous)

    return conversation, undo


async def api_turn_begin(
    *,
    user_id: int,
    conversation: NewConversation,
    team: object = billing.UNSET,
    **turn: Any,
) -> tuple[AsyncIterator[TurnEvent], Started]:
    """Start a request's turn and wait for it to be stored, with its conversation.

    The conversation bills `team` (chat.services.billing: an id, an exact name or None) if
    given, else the user's first team; a team the user is not in is refused first. It is
    stored in the turn's one write, once the budget agreed: a refusal raises having stored
    nothing.
    """
    team_id = await billing.abilling_team_for_new(user_id=user_id, team=team)
    conversation = dataclasses.replace(conversation, billing_team_id=team_id)
    events = run_turn(user_id=user_id, new_conversation=conversation, **turn)
    started = await anext(events)
    assert isinstance(started, Started)
    return events, started


async def api_generation_begin(
    *, user_id: int, conversation_id: uuid.UUID, undo: Callable[[], object], **turn: Any
) -> Started:
    """Start a background generation (stoppable from any process); a refusal, or an answer
    already under way in the conversation, undoes what the door prepared."""
    try:
        if await generations.active_generation(conversation_id) is not None:
            raise errors.InvalidInput("Wait for the answer to finish, or stop it.", code="busy")
        return await generations.generation_start(
            user_id=user_id, conversation_id=conversation_id, **turn
        )
    except BaseException:
        await sync_to_async(undo)()
        raise


async def api_generation_stop(*, user_id: int, conversation_id: str) -> None:
    """Stop the answer running in one of the user's conversations, in whichever process."""
    conversation = await sync_to_async(conversation_get_for_user)(
        user_id=user_id, conversation_id=conversation_id
    )
    message_id = await generations.active_generation(conversation.id)
    if message_id is not None:
        await generations.generation_stop(message_id=message_id)
