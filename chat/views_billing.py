"""The composer's "Bill to" select: the user's teams, the current choice and its meter.

The view that changes the choice is chat.views.conversation_billing_team; the browser
consumer sends `team_meter_oob` after each turn or refusal so the team's meter stays true.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.template.loader import render_to_string

from budgets.scopes import team_scope
from budgets.services import scope_usage_sync
from chat.models import Conversation
from chat.services import billing, conversations

TEMPLATE = "chat/conversation.html"


def billing_panel(*, user_id: int, conversation: Conversation) -> dict[str, object]:
    """What the select shows: the user's teams, the current choice, and that team's meter.

    A conversation still billed to a team the user has left shows that team (so the refusal
    that follows makes sense) until they pick another; with no team at all the select hides.
    """
    teams = billing.billing_teams(user_id=user_id)
    current = conversation.billing_team_id
    left = current is not None and all(team.id != current for team in teams)
    return {
        "shown": bool(teams) or current is not None,
        "teams": teams,
        "current_id": current,
        "current_name": conversation.billing_team.name if current else "",
        "left": left,
        "team_usage": scope_usage_sync(scope=team_scope(current)) if current else None,
    }


def team_meter_oob(*, user_id: int, conversation_id: object) -> str:
    """The billed team's meter as an out-of-band fragment (the select keeps its form and token)."""
    conversation = conversations.conversation_get_for_user(
        user_id=user_id,
        conversation_id=conversation_id,  # type: ignore[arg-type]
    )
    context = {
        "conversation": conversation,
        "billing": billing_panel(user_id=user_id, conversation=conversation),
        "oob": True,
    }
    return render_to_string(f"{TEMPLATE}#team-meter", context)


def billing_form_oob(request: HttpRequest, *, user_id: int, conversation_id: object) -> str:
    """The whole select as it stands, out of band: after a refused choice the page's select
    goes back to the choice that still holds instead of showing the refused one."""
    conversation = conversations.conversation_get_for_user(
        user_id=user_id,
        conversation_id=conversation_id,  # type: ignore[arg-type]
    )
    context = {
        "conversation": conversation,
        "billing": billing_panel(user_id=user_id, conversation=conversation),
        "billing_oob": True,
    }
    return render_to_string(f"{TEMPLATE}#billing", context, request=request)
