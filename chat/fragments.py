"""HTML fragments for the browser door: each one an hx-swap-oob swap for htmx's ws extension.

They are rendered from generation frames (plain dicts read from the Redis Stream), so a
reader in any process can render them without reading the database back.
"""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string
from django.utils.html import escape

from chat import selectors
from chat.models import Conversation, Message

TEMPLATE = "chat/conversation.html"


def delta(message_id: int, text: str) -> str:
    """Append escaped text to a streaming answer (plain text until it is finished)."""
    return f'<div hx-swap-oob="beforeend:#msg-{message_id}-text">{escape(text)}</div>'


def turn_started(frame: dict[str, Any]) -> str:
    """The user's message (for a new one) and the answer's placeholder, or the reopened answer."""
    user = {"id": frame["user_message_id"], "role": "user", "content": frame["user_text"]}
    answer = {
        "id": frame["assistant_message_id"],
        "role": "assistant",
        "content": frame.get("prefix", ""),
        "status": Message.Status.STREAMING,
        "model": frame["model"],
    }
    context = {
        "mode": frame.get("mode", "send"),
        "user_message": user,
        "answer": answer,
        "replaced": frame.get("replaced_message_ids", ()),
        "streaming": True,
    }
    return render_to_string(f"{TEMPLATE}#turn-started", context)


def turn_ended(frame: dict[str, Any]) -> str:
    """The whole answer, replacing its streaming version, and the composer's controls."""
    message: dict[str, Any] = {
        "id": frame["message_id"],
        "role": "assistant",
        "content": frame.get("content", ""),
        "model": frame.get("model", ""),
    }
    if frame["type"] == "finished":
        usage = frame["usage"]
        message.update(
            status=Message.Status.DONE,
            stop_reason=frame["stop_reason"],
            input_tokens=usage["input_tokens"],
            cache_write_tokens=usage["cache_write_tokens"],
            cache_read_tokens=usage["cache_read_tokens"],
            output_tokens=usage["output_tokens"],
            cost_micros=frame["cost_micros"],
            retries=frame["retries"],
            cache_hit=frame["cache_hit"],
            saved_micros=frame["saved_micros"],
            duration_ms=frame["duration_ms"],
        )
    elif frame["type"] == "stopped":
        message.update(status=Message.Status.STOPPED)
    else:
        message.update(status=frame["status"], error_message=frame["message"])
    return render_to_string(f"{TEMPLATE}#turn-ended", {"message": message, "streaming": False})


def message_notice(message_id: int, text: str, *, level: str = "info") -> str:
    """A line under a streaming answer: a retry wait, trimmed history, a shrunk reply."""
    return (
        f'<p id="msg-{message_id}-notice" hx-swap-oob="true" class="msg-notice {escape(level)}" '
        f'role="status">{escape(text)}</p>'
    )


def for_frame(frame: dict[str, Any]) -> str:
    """The fragment for one generation frame."""
    kind = frame["type"]
    if kind == "delta":
        raise ValueError("deltas are rendered by delta(), which needs the message id")
    if kind == "started":
        return turn_started(frame)
    if kind == "retrying":
        return message_notice(frame["message_id"], frame["message"] + "…", level="warn")
    if kind == "notice":
        return message_notice(frame["message_id"], frame["text"], level=frame["level"])
    return turn_ended(frame)


def conversation_resync(conversation: Conversation, *, live_id: int | None, live_text: str) -> str:
    """Every message as stored, the live answer with its text so far: the page made whole."""
    messages = selectors.conversation_messages(conversation=conversation)
    for message in messages:
        if message.id == live_id:
            message.content = live_text
            message.status = Message.Status.STREAMING
    return render_to_string(
        f"{TEMPLATE}#resync", {"chat_messages": messages, "streaming": live_id is not None}
    )


def budget_and_totals(budget: object, totals: dict[str, int]) -> str:
    """Today's budget meter and the conversation's running total, swapped in place."""
    return render_to_string(f"{TEMPLATE}#budget-oob", {"budget": budget, "totals": totals})


def notice(text: str, *, level: str = "error", resets_at: object = None) -> str:
    """A notice above the composer (refusals, errors), with a reset time in local time."""
    context = {"text": text, "level": level, "resets_at": resets_at}
    return render_to_string(f"{TEMPLATE}#notice", context)
