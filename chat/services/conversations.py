"""Conversation and message services (sync; the turn pipeline calls them from async)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from chat import errors
from chat.models import Conversation, Message
from chat.services import billing

TITLE_CHARS = 60


def conversation_get_for_user(*, user_id: int, conversation_id: uuid.UUID | str) -> Conversation:
    """The user's conversation, or NotFound (never another user's)."""
    try:
        return Conversation.objects.get(pk=conversation_id, user_id=user_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError):
        raise errors.NotFound("That conversation does not exist.") from None


def title_from_text(text: str) -> str:
    """A title from the first line of the first message, without a provider call."""
    line = " ".join(text.strip().split())
    if len(line) <= TITLE_CHARS:
        return line
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"


@transaction.atomic
def turn_messages_create(
    *, conversation: Conversation, text: str, model: str
) -> tuple[Message, Message]:
    """Store the user's message and the assistant's placeholder in one transaction."""
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=text
    )
    assistant_message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )
    fields = ["model", "updated_at"]
    conversation.model = model
    if not conversation.title:
        conversation.title = title_from_text(text)
        fields.append("title")
    conversation.save(update_fields=fields)
    return user_message, assistant_message


@dataclass(frozen=True, slots=True)
class NewConversation:
    """A conversation a program sends whole (the OpenAI-compatible API): its system prompt and
    earlier (role, text) turns, stored only with its first turn, once the budget agreed."""

    system: str = ""
    history: tuple[tuple[str, str], ...] = ()
    billing_team_id: int | None = None  # checked by the door (chat.services.billing)

    def title(self, text: str) -> str:
        """From the first user message (the turn's own text when there is no earlier one)."""
        first_user = next((content for role, content in self.history if role == "user"), text)
        return title_from_text(first_user) or title_from_text(text)


@transaction.atomic
def conversation_create_with_turn(
    *, conversation: Conversation, history: tuple[tuple[str, str], ...], text: str, model: str
) -> tuple[Message, Message]:
    """Store a new conversation (built unsaved by the turn) with its earlier turns, the user's
    message and the answer's placeholder, in one transaction."""
    conversation.model = model
    conversation.save(force_insert=True)
    Message.objects.bulk_create(
        Message(conversation=conversation, role=role, content=content) for role, content in history
    )
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content=text
    )
    assistant_message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )
    return user_message, assistant_message


CONTINUABLE = (Message.Status.STOPPED, Message.Status.INTERRUPTED)


@transaction.atomic
def turn_regenerate_prepare(
    *, conversation: Conversation, model: str
) -> tuple[Message, Message, list[int]]:
    """Answer the last user message again: drop the answers after it, add a placeholder."""
    user_message = (
        Message.objects.select_for_update()
        .filter(conversation=conversation, role=Message.Role.USER)
        .order_by("-created_at", "-id")
        .first()
    )
    if user_message is None:
        raise errors.InvalidInput("There is no message to answer again yet.")
    stale = Message.objects.filter(conversation=conversation, id__gt=user_message.id)
    replaced = list(stale.values_list("id", flat=True))
    stale.delete()
    answer = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )
    conversation.model = model
    conversation.save(update_fields=["model", "updated_at"])
    return user_message, answer, replaced


@transaction.atomic
def turn_continue_prepare(*, conversation: Conversation) -> Message:
    """Reopen the last answer, if it was stopped or interrupted, to stream the rest into it."""
    answer = (
        Message.objects.select_for_update()
        .filter(conversation=conversation)
        .order_by("-created_at", "-id")
        .first()
    )
    if answer is None or answer.role != Message.Role.ASSISTANT or answer.status not in CONTINUABLE:
        raise errors.InvalidInput("Only a stopped or interrupted answer can be continued.")
    if not answer.content:
        raise errors.InvalidInput("That answer has no text to continue; regenerate it instead.")
    answer.status = Message.Status.STREAMING
    answer.error_code = answer.error_message = ""
    answer.save(update_fields=["status", "error_code", "error_message"])
    conversation.save(update_fields=["updated_at"])
    return answer


def history_for_prompt(*, conversation: Conversation, before_id: int) -> list[tuple[str, str]]:
    """(role, text) of the conversation before a message, for the provider request."""
    rows = (
        Message.objects.filter(conversation=conversation, id__lt=before_id)
        .exclude(content="")
        .order_by("created_at", "id")
        .values_list("role", "content")
    )
    return list(rows)


def message_text(*, message_id: int) -> str:
    return Message.objects.filter(pk=message_id).values_list("content", flat=True).get()


def message_save_partial(*, message_id: int, content: str) -> None:
    """Write the text so far of a streaming answer."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(content=content)


def message_finish(*, message_id: int, status: str, content: str, **fields: Any) -> None:
    """Record how an answer ended: its text, status, usage and timings."""
    Message.objects.filter(pk=message_id).update(
        status=status, content=content, finished_at=timezone.now(), **fields
    )


def conversation_start(*, user_id: int) -> Conversation:
    """A conversation to type into: the user's newest empty one, or a new one."""
    empty = (
        Conversation.objects.filter(user_id=user_id, messages__isnull=True)
        .order_by("-created_at")
        .first()
    )
    if empty is not None:
        return empty
    team_id = billing.billing_team_for_new(user_id=user_id)
    return Conversation.objects.create(user_id=user_id, billing_team_id=team_id)


def conversation_set_billing_team(
    *, user_id: int, conversation_id: uuid.UUID | str, team: object
) -> Conversation:
    """Bill the conversation's next calls to one of the user's teams, or (None) to them alone.

    A team the user does not belong to is refused and nothing changes; calls already made
    stay on the budget they were billed to.
    """
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    team_id = billing.billing_team_resolve(user_id=user_id, team=team)
    if team_id != conversation.billing_team_id:
        conversation.billing_team_id = team_id
        conversation.save(update_fields=["billing_team", "updated_at"])
    return conversation


def conversation_rename(
    *, user_id: int, conversation_id: uuid.UUID | str, title: object
) -> Conversation:
    """Give a conversation a new title (1 to 200 characters after trimming)."""
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    if not isinstance(title, str) or not title.strip():
        raise errors.InvalidInput("A title cannot be empty.")
    title = " ".join(title.split())
    if len(title) > 200:
        raise errors.InvalidInput(f"A title can be 200 characters at most, not {len(title)}.")
    conversation.title = title
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def conversation_set_system_prompt(
    *, user_id: int, conversation_id: uuid.UUID | str, system_prompt: object
) -> Conversation:
    """Set the instructions sent before every turn of a conversation (may be empty)."""
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    if not isinstance(system_prompt, str):
        raise errors.InvalidInput("The system prompt must be text.")
    system_prompt = system_prompt.strip()
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(system_prompt) > limit:
        raise errors.InvalidInput(
            f"That system prompt is {len(system_prompt):,} characters; the limit is {limit:,}."
        )
    conversation.system_prompt = system_prompt
    conversation.save(update_fields=["system_prompt", "updated_at"])
    return conversation


def conversation_delete(*, user_id: int, conversation_id: uuid.UUID | str) -> None:
    """Delete a conversation and its messages (the usage ledger keeps its rows)."""
    conversation_get_for_user(user_id=user_id, conversation_id=conversation_id).delete()
