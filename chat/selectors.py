"""Reads for the chat pages."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from budgets.selectors import limits_for_user
from chat.models import ApiKey, Conversation, Message
from chat.providers import catalog
from chat.providers.specs import ModelInfo

LIST_LIMIT = 200


def conversation_list(*, user_id: int, query: str = "") -> QuerySet[Conversation]:
    """The user's conversations with at least one message, most recent first, by title."""
    conversations = Conversation.objects.filter(user_id=user_id).exclude(title="")
    query = query.strip()[:100]
    if query:
        conversations = conversations.filter(title__icontains=query)
    return conversations.order_by("-updated_at")[:LIST_LIMIT]


def conversation_totals(*, conversation_id: object) -> dict[str, int]:
    """What a conversation has used so far: tokens in and out, and cost in micro-dollars."""
    totals = Message.objects.filter(conversation_id=conversation_id).aggregate(
        input=Sum("input_tokens"),
        cache_write=Sum("cache_write_tokens"),
        cache_read=Sum("cache_read_tokens"),
        output=Sum("output_tokens"),
        cost=Sum("cost_micros"),
    )
    return {
        "input_tokens": (totals["input"] or 0)
        + (totals["cache_write"] or 0)
        + (totals["cache_read"] or 0),
        "output_tokens": totals["output"] or 0,
        "cost_micros": totals["cost"] or 0,
    }


def api_keys_for_user(*, user_id: int) -> QuerySet[ApiKey]:
    """The user's API keys, live ones first, newest first."""
    return ApiKey.objects.filter(user_id=user_id).order_by("revoked_at", "-created_at")


def models_for_user(*, user_id: int) -> list[ModelInfo]:
    """Models the user may pick: configured, priced, and allowed by their plan."""
    allowed = set(limits_for_user(user_id=user_id).allowed_models)
    return [m for m in catalog.available_models() if not allowed or m.id in allowed]
