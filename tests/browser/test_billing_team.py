"""Billing a team from the chat page, in real Chromium against a live Daphne and the sandbox."""

from __future__ import annotations

import pytest

from tests.browser.conftest import shot, sign_up
from tests.browser.test_chat_page import in_thread

pytestmark = pytest.mark.browser


def join_teams(username: str, *names: str) -> dict[str, int]:
    """Make the user a member of new teams, in this order (the first is their default)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from budgets.models import Team, TeamMembership

    user = get_user_model().objects.get(username=username)
    ids = {}
    for name in names:
        team = Team.objects.create(name=f"{name}-{username}", daily_tokens=1_000_000)
        TeamMembership.objects.create(team=team, user=user)
        ids[name] = team.id
    connection.close()
    return ids


def billing_of(username: str) -> tuple[int | None, list[int | None]]:
    """The billing team of the user's conversation and the team of each of their ledger rows."""
    from django.db import connection

    from budgets.models import UsageRecord
    from chat.models import Conversation

    conversation = Conversation.objects.get(user__username=username)
    teams = list(
        UsageRecord.objects.filter(user__username=username)
        .order_by("pk")
        .values_list("team_id", flat=True)
    )
    connection.close()
    return conversation.billing_team_id, teams


def spend_team_budget(team_id: int) -> None:
    """Shrink a team's daily budget below any request (and drop its cached limits)."""
    from django.db import connection

    from budgets.models import Team
    from budgets.scopes import team_scope
    from budgets.services.teams import scope_limits_invalidate

    Team.objects.filter(pk=team_id).update(daily_tokens=5)
    scope_limits_invalidate(scopes=[team_scope(team_id)])
    connection.close()


def test_bill_a_team_from_the_composer_then_its_spent_budget_is_refused_by_name(page):
    username = sign_up(page)
    teams = in_thread(join_teams, username, "Research", "Ops")
    page.click("text=Start a new chat")
    page.wait_for_function("window.htmx && document.querySelector('#composer-input')")
    select = page.locator("#billing-select")
    assert select.input_value() == str(teams["Research"])  # the first team, by default
    assert "Research" in page.locator("#team-meter").inner_text()

    select.select_option(str(teams["Ops"]))
    page.locator("#billing-team [role=status]").filter(has_text="Now billing team Ops").wait_for()
    assert f"Team Ops-{username}: 0 of 1,000,000 tokens today" in (
        page.locator("#team-meter").inner_text()
    )
    page.wait_for_timeout(300)  # the socket opens
    page.fill("#composer-input", "Hello, bill my team")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.status-done", timeout=20_000)
    answer = page.locator(".msg.assistant .msg-text").last.inner_text()
    assert 'You asked: "Hello, bill my team"' in answer
    assert in_thread(billing_of, username) == (teams["Ops"], [teams["Ops"]])
    # The team's meter follows the turn.
    page.wait_for_function(
        "!document.querySelector('#team-meter').innerText.includes(': 0 of')", timeout=5_000
    )
    shot(page, "billing-team")

    in_thread(spend_team_budget, teams["Ops"])
    page.fill("#composer-input", "One more for the team?")
    page.keyboard.press("Enter")
    notice = page.locator("#notice")
    notice.filter(has_text=f"Team Ops-{username}'s daily budget").wait_for(timeout=5_000)
    assert "Bill this conversation to another team or to your own budget" in notice.inner_text()
    assert page.locator(".msg").count() == 2  # nothing stored for the refused message
    assert page.input_value("#composer-input") == "One more for the team?"

    # Switching to the personal budget lets the same message through.
    select.select_option("")
    page.locator("#billing-team [role=status]").filter(has_text="your personal budget").wait_for()
    page.focus("#composer-input")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('.msg.assistant.status-done').length == 2")
    assert in_thread(billing_of, username) == (None, [teams["Ops"], None])
    assert page.js_errors == []
