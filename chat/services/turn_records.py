"""The turn pipeline's database side: its reads in one thread hop, its writes in one.

Both run in a thread (sync_to_async) from chat/services/turns.py: `turn_read` before the
budget is asked, `turn_store` only once it agreed, so a refusal stores nothing.
"""

from __future__ import annotations

import uuid

from chat import errors
from chat.models import Conversation
from chat.services import attachments, conversations, prompts
from chat.services.conversations import NewConversation
from chat.services.events import Started, TurnMode


def turn_read(
    *, user_id: int, conversation_id: uuid.UUID | str, mode: TurnMode, text: str
) -> tuple[Conversation, tuple[prompts.PromptDocument, ...], tuple[list, str] | errors.ChatError]:
    """The turn's reads in one thread hop: the conversation, its documents, the turns to send.

    A refusal of the turns (nothing to regenerate or continue) is returned rather than raised,
    so an unknown model is still refused first.
    """
    conversation, documents = attachments.conversation_for_turn(
        user_id=user_id, conversation_id=conversation_id
    )
    try:
        read = prompts.prompt_turns(conversation=conversation, mode=mode, text=text)
    except errors.ChatError as exc:
        return conversation, documents, exc
    return conversation, documents, read


def turn_store(
    conversation: Conversation,
    mode: TurnMode,
    text: str,
    model: str,
    *,
    new: NewConversation | None = None,
) -> Started:
    """Store what the turn needs, once the budget agreed (sync, one transaction)."""
    if new is not None:
        user_message, answer = conversations.conversation_create_with_turn(
            conversation=conversation, history=new.history, text=text, model=model
        )
        return Started(conversation.id, user_message.id, answer.id, model, text)
    if mode == "send":
        user_message, answer = conversations.turn_messages_create(
            conversation=conversation, text=text, model=model
        )
        return Started(conversation.id, user_message.id, answer.id, model, text)
    if mode == "regenerate":
        user_message, answer, replaced = conversations.turn_regenerate_prepare(
            conversation=conversation, model=model
        )
        return Started(
            conversation.id, user_message.id, answer.id, model, user_message.content,
            mode="regenerate", replaced_message_ids=tuple(replaced),
        )  # fmt: skip
    answer = conversations.turn_continue_prepare(conversation=conversation)
    return Started(
        conversation.id, 0, answer.id, answer.model or model, "",
        mode="continue", prefix=answer.content,
    )  # fmt: skip
