"""Reads for the chat pages."""

from __future__ import annotations

from django.db.models import QuerySet, Sum

from budgets.selectors import limits_for_user
from chat.models import ApiKey, Conversation, Message
from chat.providers import catalog
from chat.providers.base import Usage
from chat.providers.pricing import priced
from chat.providers.specs import ModelInfo, spec
from chat.services import accounting

LIST_LIMIT = 200


def conversation_list(*, user_id: int, query: str = "") -> QuerySet[Conversation]:
    """The user's conversations with at least one message, most recent first, by title."""
    conversations = Conversation.objects.filter(user_id=user_id).exclude(title="")
    query = query.strip()[:100]
    if query:
        conversations = conversations.filter(title__icontains=query)
    return conversations.order_by("-updated_at")[:LIST_LIMIT]


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    """The conversation's messages, each answer carrying what its prompt-cache reads saved.

    `saved_micros` is the same figure the live page shows when the answer ends, so a reload
    shows it too (at the prices in force now).
    """
    messages = list(conversation.messages.all())
    for message in messages:
        model = spec(message.model) if message.cache_read_tokens else None
        if model is not None and not message.cache_hit:
            usage = Usage(cache_read_tokens=message.cache_read_tokens)
            message.saved_micros = accounting.cache_savings(priced(model), usage)
    return messages


def conversation_totals(*, conversation_id: object) -> dict[str, int]:
    """What a conversation has used so far: tokens in and out, cost, and what caching saved.

    Costs are micro-dollars. `saved_micros` sums, per answer, what its prompt-cache reads saved
    against full input price (accounting.cache_savings), at the prices in force now.
    """
    rows = (
        Message.objects.filter(conversation_id=conversation_id, role=Message.Role.ASSISTANT)
        .values("model")
        .annotate(
            input=Sum("input_tokens"),
            cache_write=Sum("cache_write_tokens"),
            cache_read=Sum("cache_read_tokens"),
            output=Sum("output_tokens"),
            cost=Sum("cost_micros"),
        )
        .order_by()
    )
    totals = {"input_tokens": 0, "output_tokens": 0, "cost_micros": 0, "saved_micros": 0}
    for row in rows:
        read = row["cache_read"] or 0
        totals["input_tokens"] += (row["input"] or 0) + (row["cache_write"] or 0) + read
        totals["output_tokens"] += row["output"] or 0
        totals["cost_micros"] += row["cost"] or 0
        model = spec(row["model"]) if read else None
        if model is not None:
            usage = Usage(cache_read_tokens=read)
            totals["saved_micros"] += accounting.cache_savings(priced(model), usage)
    return totals


def api_keys_for_user(*, user_id: int) -> QuerySet[ApiKey]:
    """The user's API keys, live ones first, newest first."""
    return ApiKey.objects.filter(user_id=user_id).order_by("revoked_at", "-created_at")


def models_for_user(*, user_id: int) -> list[ModelInfo]:
    """Models the user may pick: configured, priced, and allowed by their plan."""
    allowed = set(limits_for_user(user_id=user_id).allowed_models)
    return [m for m in catalog.available_models() if not allowed or m.id in allowed]
