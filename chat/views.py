"""Chat pages: the conversation list and a conversation."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from chat import errors
from chat.models import Conversation
from chat.providers import catalog
from chat.services import conversations


def _model_choices() -> list[dict[str, object]]:
    return [
        {
            "id": model.id,
            "label": model.label,
            "sandbox": catalog.provider_is_sandbox(model.provider),
        }
        for model in catalog.available_models()
    ]


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The user's conversations, most recent first."""
    items = Conversation.objects.filter(user=request.user).exclude(title="")[:100]
    return render(request, "chat/home.html", {"conversations": items})


@login_required
@require_POST
def conversation_new(request: HttpRequest) -> HttpResponse:
    """Start a conversation (reusing an untouched one) and open it."""
    conversation = conversations.conversation_start(user_id=request.user.id)
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """A conversation with its messages and the composer."""
    try:
        conversation = conversations.conversation_get_for_user(
            user_id=request.user.id, conversation_id=conversation_id
        )
    except errors.NotFound:
        raise Http404("No such conversation.") from None
    models = _model_choices()
    selected = conversation.model or (models[0]["id"] if models else "")
    context = {
        "conversation": conversation,
        "messages": conversation.messages.all(),
        "conversations": Conversation.objects.filter(user=request.user).exclude(title="")[:100],
        "models": models,
        "selected_model": selected,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
    }
    return render(request, "chat/conversation.html", context)
