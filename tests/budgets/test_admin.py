"""The admin: plans, quotas inline on users, actions, the ledger with totals, the dashboard."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from budgets.models import Plan, Quota, UsageRecord
from budgets.services import budget_state_sync


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.fixture
def records(user, other_user):
    for i, (who, model, tokens) in enumerate(
        [(user, "claude-test", 1200), (user, "gpt-test", 800), (other_user, "gpt-test", 500)]
    ):
        UsageRecord.objects.create(
            user=who, model=model, provider="p", input_tokens=tokens, cost_micros=tokens * 10,
            outcome="finished", request_id=f"adm{i}",
        )  # fmt: skip


def test_usage_record_changelist_shows_totals_of_the_filtered_rows(admin_client, records, user):
    url = reverse("admin:budgets_usagerecord_changelist")
    page = admin_client.get(url).content.decode()
    assert "3 calls · 2,500 tokens · $0.0250" in page
    filtered = admin_client.get(url, {"user__id__exact": user.id}).content.decode()
    assert "2 calls · 2,000 tokens" in filtered


def test_usage_record_changelist_filters_by_model_outcome_and_cache_hit(admin_client, records):
    url = reverse("admin:budgets_usagerecord_changelist")
    page = admin_client.get(url, {"model": "gpt-test", "outcome__exact": "finished",
                                  "cache_hit__exact": "0"}).content.decode()  # fmt: skip
    assert "2 calls · 1,300 tokens" in page


def test_dashboard_renders_svg_charts_and_top_users(admin_client, records):
    index = admin_client.get(reverse("admin:index")).content.decode()
    dashboard_url = reverse("admin:budgets_usagedashboard_changelist")
    assert dashboard_url in index
    page = admin_client.get(dashboard_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg viewBox") == 3
    assert "Tokens per day by model" in html
    assert "Top users today" in html
    assert "ada" in html
    assert "grace" in html
    assert 'style="' not in html.split("<main", 1)[-1].split("budget-dashboard-grid", 1)[-1]


def test_dashboard_is_refused_to_staff_without_the_ledger_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:budgets_usagedashboard_changelist")).status_code == 403


def test_user_change_page_has_the_quota_inline_with_todays_use(admin_client, user, records):
    Quota.objects.create(user=user, plan=Plan.objects.get(is_default=True))
    page = admin_client.get(reverse("admin:auth_user_change", args=[user.id])).content.decode()
    assert "Today&#x27;s use" in page
    assert "2,000 of 200,000 tokens · $0.02" in page


def test_grant_extra_tokens_action_asks_for_the_amount_then_grants_it(admin_client, user, settings):
    url = reverse("admin:auth_user_changelist")
    form = admin_client.post(url, {"action": "grant_extra_tokens", ACTION_CHECKBOX_NAME: [user.id]})
    assert form.status_code == 200
    assert f'value="{settings.BUDGETS_GRANT_TOKENS}"' in form.content.decode()
    done = admin_client.post(url, {"action": "grant_extra_tokens", ACTION_CHECKBOX_NAME: [user.id],
                                   "apply": "1", "tokens": "7000"})  # fmt: skip
    assert done.status_code == 302
    assert Quota.objects.get(user=user).extra_tokens == 7000
    assert budget_state_sync(user_id=user.id).tokens_limit == 200_000 + 7000


def test_reset_todays_use_action_zeroes_the_counters(admin_client, user, records):
    assert budget_state_sync(user_id=user.id).tokens_used == 2000
    url = reverse("admin:budgets_quota_changelist")
    admin_client.post(url, {"action": "reset_today_use",
                            ACTION_CHECKBOX_NAME: [Quota.objects.get(user=user).pk]})  # fmt: skip
    assert budget_state_sync(user_id=user.id).tokens_used == 0


def _plan_form(**overrides) -> dict:
    data = {"name": "Team", "daily_tokens": "500000", "daily_cost_usd": "",
            "requests_per_minute": "60", "concurrent_streams": "4", "max_output_tokens": "8192",
            "allowed_models": ""}  # fmt: skip
    data.update(overrides)
    return data


def test_making_a_plan_the_default_takes_the_flag_from_the_old_default(admin_client):
    response = admin_client.post(reverse("admin:budgets_plan_add"), _plan_form(is_default="on"))
    assert response.status_code == 302
    assert list(Plan.objects.filter(is_default=True).values_list("name", flat=True)) == ["Team"]


def test_the_only_default_plan_cannot_be_unset(admin_client):
    plan = Plan.objects.get(is_default=True)
    url = reverse("admin:budgets_plan_change", args=[plan.id])
    response = admin_client.post(url, _plan_form(name=plan.name))
    assert "There must be a default plan" in response.content.decode()
    assert Plan.objects.get(pk=plan.pk).is_default


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("daily_tokens", "-1", "greater than or equal to 0"),
        ("daily_tokens", str(10**13), "can&#x27;t exceed 1,000,000,000,000"),
        ("daily_cost_usd", "5000000", "can&#x27;t exceed $1,000,000"),
        ("requests_per_minute", "100001", "can&#x27;t exceed 100,000"),
        ("allowed_models", "gpt 4", "is not a model id"),
    ],
)
def test_absurd_plan_values_are_refused_in_admin_with_a_clear_message(
    admin_client, field, value, message
):
    response = admin_client.post(reverse("admin:budgets_plan_add"), _plan_form(**{field: value}))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Plan.objects.filter(name="Team").exists()
