"""Chat pages: the conversation list and a conversation."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget

from budgets.services import budget_state_sync
from chat import errors, selectors, views_billing
from chat.frames import REPLY_LENGTHS
from chat.models import Conversation
from chat.providers import catalog
from chat.services import api_keys as api_keys_service
from chat.services import attachments, billing, conversations


def _model_choices(user_id: int) -> list[dict[str, object]]:
    return [
        {
            "id": model.id,
            "label": model.label,
            "sandbox": catalog.provider_is_sandbox(model.provider),
        }
        for model in selectors.models_for_user(user_id=user_id)
    ]


def _owned(request: HttpRequest, conversation_id: str) -> Conversation:
    try:
        return conversations.conversation_get_for_user(
            user_id=request.user.id, conversation_id=conversation_id
        )
    except errors.NotFound:
        raise Http404("No such conversation.") from None


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The user's conversations, most recent first, searchable by title."""
    query = request.GET.get("q", "")
    context = {
        "conversations": selectors.conversation_list(user_id=request.user.id, query=query),
        "query": query,
    }
    if request.htmx and request.htmx.target == "conversation-list":
        return render(request, "chat/home.html#conversation-list", context)
    return render(request, "chat/home.html", context)


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
    conversation = _owned(request, conversation_id)
    models = _model_choices(request.user.id)
    selected = conversation.model or (models[0]["id"] if models else "")
    context = {
        "conversation": conversation,
        "chat_messages": selectors.conversation_messages(conversation=conversation),
        "conversations": selectors.conversation_list(user_id=request.user.id),
        "models": models,
        "selected_model": selected,
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "reply_lengths": REPLY_LENGTHS,
        "budget": budget_state_sync(user_id=request.user.id),
        "totals": selectors.conversation_totals(conversation_id=conversation.id),
        "attachments": attachments.attachment_panel(
            user_id=request.user.id, conversation_id=conversation.id
        ),
        "billing": views_billing.billing_panel(user_id=request.user.id, conversation=conversation),
    }
    return render(request, "chat/conversation.html", context)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Rename a conversation; htmx gets the title back, others a redirect."""
    try:
        conversation = conversations.conversation_rename(
            user_id=request.user.id,
            conversation_id=conversation_id,
            title=request.POST.get("title"),
        )
    except errors.ChatError as exc:
        return _refused(request, exc, conversation_id)
    if request.htmx:
        return render(request, "chat/conversation.html#title", {"conversation": conversation})
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Ask for confirmation, then delete the conversation."""
    conversation = _owned(request, conversation_id)
    if request.method == "POST":
        conversations.conversation_delete(user_id=request.user.id, conversation_id=conversation.id)
        messages.success(request, f"Deleted “{conversation}”.")
        return redirect("chat:home")
    return render(request, "chat/confirm_delete.html", {"conversation": conversation})


@login_required
@require_POST
def conversation_system_prompt(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Save the conversation's system prompt; htmx gets the form back with a status line."""
    try:
        conversation = conversations.conversation_set_system_prompt(
            user_id=request.user.id,
            conversation_id=conversation_id,
            system_prompt=request.POST.get("system_prompt", ""),
        )
    except errors.ChatError as exc:
        return _refused(request, exc, conversation_id)
    if request.htmx:
        context = {
            "conversation": conversation,
            "saved": True,
            "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        }
        return render(request, "chat/conversation.html#system-prompt", context)
    return redirect("chat:conversation", conversation_id=conversation.id)


@login_required
@require_POST
def conversation_billing_team(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """Bill the conversation to the chosen team (or the personal budget); htmx gets the select
    back, a plain form post a redirect with a message; a team the user is not in is refused."""
    try:
        conversation = conversations.conversation_set_billing_team(
            user_id=request.user.id,
            conversation_id=conversation_id,
            team=request.POST.get("team", billing.PERSONAL_CHOICE),
        )
    except errors.ChatError as exc:
        response = _refused(request, exc, conversation_id)
        if response.status_code == 422:  # htmx: put the select back to the unchanged choice
            response.content += views_billing.billing_form_oob(
                request, user_id=request.user.id, conversation_id=conversation_id
            ).encode()
        return response
    if request.htmx:
        panel = views_billing.billing_panel(user_id=request.user.id, conversation=conversation)
        context = {"conversation": conversation, "billing": panel, "saved": True}
        return render(request, "chat/conversation.html#billing", context)
    name = conversation.billing_team.name if conversation.billing_team_id else None
    messages.success(
        request,
        f"This conversation now bills team {name}."
        if name
        else "This conversation now bills your personal budget only.",
    )
    return redirect("chat:conversation", conversation_id=conversation.id)


def _refused(request: HttpRequest, exc: errors.ChatError, conversation_id: str) -> HttpResponse:
    """Another user's conversation is a 404; bad input a 422 for htmx, else a message."""
    if isinstance(exc, errors.NotFound):
        raise Http404("No such conversation.") from exc
    if request.htmx:
        # Shown in the page's alert region, leaving the form (and what was typed) as it is.
        notice = format_html('<p class="notice error">{}</p>', exc.message)
        response = HttpResponse(notice, status=422)
        return reswap(retarget(response, "#flash"), "innerHTML")
    messages.error(request, exc.message)
    return redirect("chat:conversation", conversation_id=conversation_id)


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """The user's API keys; a POST creates one and shows it, this once."""
    created = None
    if request.method == "POST":
        try:
            key, raw = api_keys_service.api_key_create(
                user_id=request.user.id, name=request.POST.get("name")
            )
            created = {"key": key, "raw": raw}
        except errors.InvalidInput as exc:
            messages.error(request, exc.message)
    keys = selectors.api_keys_for_user(user_id=request.user.id)
    return render(request, "chat/api_keys.html", {"keys": keys, "created": created})


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        key = api_keys_service.api_key_revoke(user_id=request.user.id, key_id=key_id)
    except errors.NotFound:
        raise Http404("No such API key.") from None
    messages.success(request, f"Revoked “{key.name}”: programs using it are refused from now on.")
    return redirect("chat:api_keys")
