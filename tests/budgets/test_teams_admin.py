"""Admin of teams (membership inline) and provider caps, and what a save invalidates."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from budgets import keys
from budgets.errors import BudgetRefused
from budgets.models import ProviderCap, Team, TeamMembership, UsageRecord
from budgets.scopes import member_scope, provider_scope, team_scope
from budgets.services import scope_usage_sync
from budgets.store import sync_store
from tests.budgets.helpers import reserve


@pytest.fixture
def admin_client(client, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    return client


def _team_form(name="Research", daily_tokens=500_000, cost="", members=(), initial=0):
    """POST data of the team change form; members: (user_id, role, cap, membership_id)."""
    data = {
        "name": name,
        "daily_tokens": str(daily_tokens),
        "daily_cost_usd": cost,
        "allowed_models": "",
        "memberships-TOTAL_FORMS": str(len(members)),
        "memberships-INITIAL_FORMS": str(initial),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, (user_id, role, cap, membership_id) in enumerate(members):
        data[f"memberships-{i}-user"] = str(user_id)
        data[f"memberships-{i}-role"] = role
        data[f"memberships-{i}-daily_tokens_cap"] = "" if cap is None else str(cap)
        data[f"memberships-{i}-id"] = "" if membership_id is None else str(membership_id)
    return data


def _errors(response) -> str:
    assert response.status_code == 200, "expected the form again, with errors"
    return response.content.decode().replace("&#x27;", "'")


def test_add_team_with_members_in_the_inline(admin_client, user, other_user):
    response = admin_client.post(
        reverse("admin:budgets_team_add"),
        _team_form(
            cost="25",
            members=[(user.id, "admin", None, None), (other_user.id, "member", 100_000, None)],
        ),
    )
    assert response.status_code == 302, _errors(response)
    team = Team.objects.get(name="Research")
    assert (team.daily_tokens, team.daily_cost_usd) == (500_000, Decimal("25"))
    roles = {m.user.username: (m.role, m.daily_tokens_cap) for m in team.memberships.all()}
    assert roles == {"ada": ("admin", None), "grace": ("member", 100_000)}


def test_a_team_without_members_is_refused(admin_client):
    response = admin_client.post(reverse("admin:budgets_team_add"), _team_form())
    assert "A team needs at least one member" in _errors(response)
    assert not Team.objects.exists()


def test_removing_the_last_member_is_refused(admin_client, user):
    team = Team.objects.create(name="Solo", daily_tokens=1000)
    m = TeamMembership.objects.create(team=team, user=user, role="admin")
    data = _team_form(name="Solo", daily_tokens=1000, members=[(user.id, "admin", None, m.pk)])
    data["memberships-INITIAL_FORMS"] = "1"
    data["memberships-0-team"] = str(team.pk)
    data["memberships-0-DELETE"] = "on"
    response = admin_client.post(reverse("admin:budgets_team_change", args=[team.pk]), data)
    assert "A team needs at least one member" in _errors(response)
    assert TeamMembership.objects.filter(pk=m.pk).exists()


def test_a_member_cap_above_the_budget_is_refused_when_adding(admin_client, user):
    response = admin_client.post(
        reverse("admin:budgets_team_add"),
        _team_form(daily_tokens=1000, members=[(user.id, "member", 5000, None)]),
    )
    page = _errors(response)
    assert "ada's cap (5,000 tokens) is above the team's daily budget (1,000 tokens)" in page
    assert not Team.objects.exists()


def test_lowering_the_budget_below_a_cap_in_the_same_save_is_refused(admin_client, user):
    team = Team.objects.create(name="Ops", daily_tokens=10_000)
    m = TeamMembership.objects.create(team=team, user=user, daily_tokens_cap=8000)
    data = _team_form(name="Ops", daily_tokens=5000, members=[(user.id, "member", 8000, m.pk)])
    data["memberships-INITIAL_FORMS"] = "1"
    data["memberships-0-team"] = str(team.pk)
    response = admin_client.post(reverse("admin:budgets_team_change", args=[team.pk]), data)
    assert "can't exceed the team's daily budget (5,000 tokens)" in _errors(response)
    team.refresh_from_db()
    assert team.daily_tokens == 10_000


def test_lowering_the_budget_and_the_cap_together_is_accepted(admin_client, user):
    team = Team.objects.create(name="Ops", daily_tokens=10_000)
    m = TeamMembership.objects.create(team=team, user=user, daily_tokens_cap=8000)
    data = _team_form(name="Ops", daily_tokens=5000, members=[(user.id, "member", 4000, m.pk)])
    data["memberships-INITIAL_FORMS"] = "1"
    data["memberships-0-team"] = str(team.pk)
    response = admin_client.post(reverse("admin:budgets_team_change", args=[team.pk]), data)
    assert response.status_code == 302, _errors(response)
    m.refresh_from_db()
    team.refresh_from_db()
    assert (team.daily_tokens, m.daily_tokens_cap) == (5000, 4000)


def test_team_list_shows_members_and_todays_use(admin_client, user, other_user):
    team = Team.objects.create(name="Research", daily_tokens=10_000)
    TeamMembership.objects.create(team=team, user=user, role="admin")
    TeamMembership.objects.create(team=team, user=other_user)
    UsageRecord.objects.create(
        user=user, team=team, model="claude-x", provider="anthropic", input_tokens=2500,
        cost_micros=1_500_000, outcome="finished", request_id="t1",
    )  # fmt: skip
    page = admin_client.get(reverse("admin:budgets_team_changelist")).content.decode()
    assert '<td class="field-member_count">2</td>' in page
    assert "2,500 of 10,000 tokens · $1.50 (25%)" in page
    assert reverse("budgets:team_usage", args=[team.pk]) in page


def test_deleting_a_team_drops_its_cached_limits(admin_client, user):
    team = Team.objects.create(name="Gone", daily_tokens=1000)
    TeamMembership.objects.create(team=team, user=user)
    scope_usage_sync(scope=team_scope(team.pk))  # caches the team's limits
    client = sync_store().client
    assert client.exists(keys.limits_key(team_scope(team.pk)))
    client.hset(keys.limits_key(member_scope(team.pk, user.id)), "member", "1")
    response = admin_client.post(
        reverse("admin:budgets_team_delete", args=[team.pk]), {"post": "yes"}
    )
    assert response.status_code == 302
    assert not Team.objects.exists()
    assert not client.exists(keys.limits_key(team_scope(team.pk)))
    assert not client.exists(keys.limits_key(member_scope(team.pk, user.id)))


def test_provider_cap_page_shows_todays_spend_against_the_cap(admin_client, user):
    ProviderCap.objects.create(provider="anthropic", daily_cost_usd=Decimal("200"))
    UsageRecord.objects.create(
        user=user, model="claude-x", provider="anthropic", input_tokens=1000,
        cost_micros=50_000_000, outcome="finished", request_id="p1",
    )  # fmt: skip
    page = admin_client.get(reverse("admin:budgets_providercap_changelist")).content.decode()
    assert "$50.00 (25%) · 1,000 tokens" in page


def test_provider_cap_change_refuses_a_cap_under_a_cent_and_invalidates(admin_client):
    cap = ProviderCap.objects.create(provider="openai", daily_cost_usd=Decimal("10"))
    scope_usage_sync(scope=provider_scope("openai"))
    url = reverse("admin:budgets_providercap_change", args=[cap.pk])
    refused = admin_client.post(url, {"provider": "openai", "daily_cost_usd": "0.001"})
    assert "at least $0.01" in _errors(refused)
    done = admin_client.post(url, {"provider": "openai", "daily_cost_usd": "3"})
    assert done.status_code == 302
    assert scope_usage_sync(scope=provider_scope("openai")).cost_limit_micros == 3_000_000


def test_usage_record_list_shows_and_filters_by_team(admin_client, user):
    team = Team.objects.create(name="Blue", daily_tokens=1000)
    TeamMembership.objects.create(team=team, user=user)
    for i, billed in enumerate((team, None)):
        UsageRecord.objects.create(
            user=user, team=billed, model="m", provider="openai", input_tokens=100 + i,
            outcome="finished", request_id=f"u{i}",
        )  # fmt: skip
    url = reverse("admin:budgets_usagerecord_changelist")
    page = admin_client.get(url, {"team__id__exact": team.pk}).content.decode()
    assert "1 calls · 100 tokens" in page
    assert '<td class="field-team nowrap">Blue</td>' in page or ">Blue</td>" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_stores")
async def test_an_admin_change_of_the_budget_applies_to_the_next_reservation(
    admin_client, make_user
):
    member = await sync_to_async(make_user)(daily_tokens=1_000_000)
    team = await Team.objects.acreate(name="Live", daily_tokens=1000)
    m = await TeamMembership.objects.acreate(team=team, user=member)
    await reserve(member.id, team_id=team.id)  # 200 tokens; caches the 1,000-token budget
    data = _team_form(name="Live", daily_tokens=300, members=[(member.id, "member", None, m.pk)])
    data["memberships-INITIAL_FORMS"] = "1"
    data["memberships-0-team"] = str(team.pk)
    url = reverse("admin:budgets_team_change", args=[team.pk])
    response = await sync_to_async(admin_client.post)(url, data)
    assert response.status_code == 302
    with pytest.raises(BudgetRefused) as refused:
        await reserve(member.id, team_id=team.id)  # 200 more would pass the new 300
    assert refused.value.scope == f"team:{team.id}"


def test_add_page_shows_the_membership_inline(admin_client):
    page = admin_client.get(reverse("admin:budgets_team_add")).content.decode()
    assert 'name="memberships-TOTAL_FORMS"' in page
    assert 'name="memberships-0-daily_tokens_cap"' in page
    assert "daily token cap" in page.lower()
