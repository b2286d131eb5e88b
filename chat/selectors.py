"""Reads for the chat pages."""

from __future__ import annotations

from django.db.models import QuerySet

from chat.models import Conversation

LIST_LIMIT = 200


def conversation_list(*, user_id: int, query: str = "") -> QuerySet[Conversation]:
    """The user's conversations with at least one message, most recent first, by title."""
    conversations = Conversation.objects.filter(user_id=user_id).exclude(title="")
    query = query.strip()[:100]
    if query:
        conversations = conversations.filter(title__icontains=query)
    return conversations.order_by("-updated_at")[:LIST_LIMIT]
