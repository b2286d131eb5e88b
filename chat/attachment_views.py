"""Attaching documents to a conversation from its page: htmx gets the panel back."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from chat import errors
from chat.services import attachments, conversations

PANEL = "chat/conversation.html#attachments"


@login_required
@require_POST
def attachment_add(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Attach one of the user's ready documents (document_id in the form)."""
    return _change(
        request, conversation_id, attachments.document_attach, request.POST.get("document_id", "")
    )


@login_required
@require_GET
def attachment_choices(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """The documents the user may attach now (the menu asks again each time it opens)."""
    user_id = request.user.id
    try:
        conversation = conversations.conversation_get_for_user(
            user_id=user_id, conversation_id=conversation_id
        )
    except errors.NotFound:
        raise Http404("No such conversation.") from None
    panel = attachments.attachment_panel(user_id=user_id, conversation_id=conversation.id)
    context = {"conversation": conversation, "attachments": panel}
    return render(request, "chat/conversation.html#attach-choices", context)


@login_required
@require_POST
def attachment_remove(request: HttpRequest, conversation_id: str, document_id: str) -> HttpResponse:
    """Detach a document from the conversation."""
    return _change(request, conversation_id, attachments.document_detach, document_id)


def _change(
    request: HttpRequest, conversation_id: str, service: Callable[..., object], document_id: str
) -> HttpResponse:
    """Run the service; a refusal is shown in the panel (htmx) or as a message."""
    user_id = request.user.id
    try:
        conversation = conversations.conversation_get_for_user(
            user_id=user_id, conversation_id=conversation_id
        )
    except errors.NotFound:
        raise Http404("No such conversation.") from None
    error = ""
    try:
        service(user_id=user_id, conversation_id=conversation.id, document_id=document_id)
    except errors.ChatError as exc:
        error = exc.message
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("chat:conversation", conversation_id=conversation.id)
    panel = attachments.attachment_panel(user_id=user_id, conversation_id=conversation.id)
    context = {"conversation": conversation, "attachments": panel, "attach_error": error}
    return render(request, PANEL, context)
