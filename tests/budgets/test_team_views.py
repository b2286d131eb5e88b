"""A team's usage page (team admins only) and the team view of the admin dashboard."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from budgets.models import ProviderCap, Team, TeamMembership, UsageRecord


@pytest.fixture
def team(user, other_user):
    team = Team.objects.create(name="Research", daily_tokens=10_000, daily_cost_usd=Decimal("5"))
    TeamMembership.objects.create(team=team, user=user, role="admin")
    TeamMembership.objects.create(team=team, user=other_user, daily_tokens_cap=4000)
    return team


def _row(who, team, model, tokens, cost, rid, when=None):
    return UsageRecord.objects.create(
        user=who, team=team, model=model, provider="anthropic", input_tokens=tokens,
        cost_micros=cost, outcome="finished", request_id=rid,
        created_at=when or timezone.now(),
    )  # fmt: skip


@pytest.fixture
def records(team, user, other_user):
    _row(user, team, "claude-team", 1500, 300_000, "a")
    _row(other_user, team, "gpt-team", 1000, 200_000, "b")
    _row(other_user, team, "gpt-team", 700, 100_000, "c", timezone.now() - dt.timedelta(days=3))
    _row(user, None, "claude-private", 9999, 1, "own")  # billed to no team: not the team's


def test_team_admin_sees_members_models_and_charts(client, user, team, records):
    client.force_login(user)
    response = client.get(reverse("budgets:team_usage", args=[team.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Team Research: usage" in html
    assert "2,500 of 10,000 tokens today · $0.50 of $5.00 (25%)" in html  # the team meter
    today = html.split('id="team-today-heading"')[1].split('id="team-period-heading"')[0]
    assert "<caption>Today by member</caption>" in today
    assert "ada" in today
    assert "grace" in today
    assert "<td>team admin</td>" in today
    assert "4,000 (25%)" in today  # grace's 1,000 tokens today against her 4,000 cap
    assert "gpt-team" in today
    assert "claude-team" in today
    period = html.split('id="team-period-heading"')[1]
    assert "3,200 tokens · $0.60" in period
    assert "1,700" in period  # grace over 30 days
    assert html.count("<svg viewBox") == 3
    assert "Tokens by member, last 30 days" in html
    assert "claude-private" not in html
    assert " style=" not in html


@pytest.mark.parametrize("who", ["plain member", "outsider"])
def test_others_get_404(client, team, other_user, django_user_model, who):
    viewer = other_user if who == "plain member" else django_user_model.objects.create_user("x")
    client.force_login(viewer)
    assert client.get(reverse("budgets:team_usage", args=[team.pk])).status_code == 404


def test_an_unknown_team_is_404_even_for_a_superuser(client, django_user_model, db):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    assert client.get(reverse("budgets:team_usage", args=[999])).status_code == 404


def test_team_page_requires_sign_in(client, team):
    response = client.get(reverse("budgets:team_usage", args=[team.pk]))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_usage_page_links_to_the_teams_i_manage_only(client, user, other_user, team):
    client.force_login(user)
    url = reverse("budgets:team_usage", args=[team.pk])
    assert url in client.get(reverse("budgets:usage")).content.decode()
    client.force_login(other_user)
    html = client.get(reverse("budgets:usage")).content.decode()
    assert url not in html
    assert "Teams you manage" not in html


def test_dashboard_team_view_shows_teams_and_provider_caps(client, django_user_model, records):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "pw"))
    ProviderCap.objects.create(provider="anthropic", daily_cost_usd=Decimal("2"))
    team = Team.objects.get(name="Research")
    html = client.get(reverse("admin:budgets_usagedashboard_changelist")).content.decode()
    teams = html.split('id="teams-today-heading"')[1].split('id="providers-today-heading"')[0]
    assert "Research" in teams
    assert '<td class="num">2,500</td>' in teams
    assert '<td class="num">10,000</td>' in teams
    assert "25%" in teams
    assert reverse("budgets:team_usage", args=[team.pk]) in teams
    providers = html.split('id="providers-today-heading"')[1]
    # Anthropic today: the two team calls and the private one (not cache hits).
    assert "$0.50" in providers
    assert "$2" in providers
    assert "25%" in providers
    assert "OpenAI" in providers
    assert "no cap" in providers
    assert html.count("<svg viewBox") == 3  # the team view adds tables, not charts
