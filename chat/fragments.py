"""HTML fragments for the browser door: each one an hx-swap-oob swap for htmx's ws extension.

They are rendered from the pipeline's events, without reading the database back.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string
from django.utils.html import escape

from chat.models import Message
from chat.services.turns import Failed, Finished, Started


def delta(message_id: int, text: str) -> str:
    """Append escaped text to a streaming answer (plain text until it is finished)."""
    return f'<div hx-swap-oob="beforeend:#msg-{message_id}-text">{escape(text)}</div>'


def turn_started(event: Started) -> str:
    """The user's message and the answer's placeholder, appended to the list."""
    user = {"id": event.user_message_id, "role": "user", "content": event.user_text}
    answer = {
        "id": event.assistant_message_id,
        "role": "assistant",
        "content": "",
        "status": Message.Status.STREAMING,
        "model": event.model,
    }
    return render_to_string(
        "chat/conversation.html#turn-started",
        {"user_message": user, "answer": answer, "streaming": True},
    )


def turn_ended(event: Finished | Failed, *, model: str) -> str:
    """The whole answer, replacing its streaming version, and the composer's controls."""
    message: dict[str, Any] = {
        "id": event.message_id,
        "role": "assistant",
        "content": event.content,
        "model": model,
    }
    if isinstance(event, Finished):
        message.update(
            status=Message.Status.DONE,
            stop_reason=event.stop_reason,
            input_tokens=event.usage.prompt_tokens,
            output_tokens=event.usage.output_tokens,
            duration_ms=event.duration_ms,
        )
    else:
        message.update(status=event.status, error_message=event.message)
    return render_to_string(
        "chat/conversation.html#turn-ended", {"message": message, "streaming": False}
    )


def turn_stopped(message_id: int, content: str, *, model: str) -> str:
    """The answer as it was when the user stopped it."""
    message = {
        "id": message_id,
        "role": "assistant",
        "content": content,
        "status": Message.Status.STOPPED,
        "model": model,
    }
    return render_to_string(
        "chat/conversation.html#turn-ended", {"message": message, "streaming": False}
    )


def notice(text: str, *, level: str = "error") -> str:
    """A notice above the composer (refusals, errors)."""
    return render_to_string("chat/conversation.html#notice", {"text": text, "level": level})
