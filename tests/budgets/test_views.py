"""The user's usage page and the meter partial."""

from __future__ import annotations

import datetime as dt

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from budgets.models import UsageRecord
from budgets.services.types import BudgetState

RESET = dt.datetime(2025, 2, 1, 0, 0, tzinfo=dt.UTC)


def _state(tokens_used: int, cost_used: int = 40_000, available: bool = True) -> BudgetState:
    return BudgetState(
        user_id=1, day="20250131", tokens_used=tokens_used, tokens_limit=100_000,
        cost_used_micros=cost_used, cost_limit_micros=1_000_000, resets_at=RESET,
        available=available,
    )  # fmt: skip


def test_meter_shows_tokens_and_cost_of_the_day():
    html = render_to_string("budgets/_meter.html", {"budget": _state(12_300)})
    assert "12,300 of 100,000 tokens today · $0.04 of $1.00" in html
    assert "<meter" in html
    assert 'value="0.123"' in html
    assert "used up" not in html
    assert "You've used" not in html


def test_meter_warns_kindly_from_80_percent():
    html = render_to_string("budgets/_meter.html", {"budget": _state(80_000)})
    assert "You've used 80% of today's budget" in html


def test_meter_at_the_limit_says_when_it_resets_in_a_time_element():
    html = render_to_string("budgets/_meter.html", {"budget": _state(100_000)})
    assert "Your daily budget is used up; it resets at" in html
    assert '<time datetime="2025-02-01T00:00:00+00:00">00:00 UTC</time>' in html


def test_meter_when_redis_is_down_says_so_without_numbers():
    html = render_to_string("budgets/_meter.html", {"budget": _state(0, available=False)})
    assert "can't be shown right now" in html
    assert "<meter" not in html


def test_usage_page_requires_sign_in(client, db):
    response = client.get(reverse("budgets:usage"))
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


@pytest.fixture
def records(user, other_user):
    UsageRecord.objects.create(
        user=user, model="claude-mine", provider="anthropic", input_tokens=900, output_tokens=300,
        cost_micros=12_000, outcome="finished", request_id="mine",
    )  # fmt: skip
    UsageRecord.objects.create(
        user=other_user, model="gpt-theirs", provider="openai", input_tokens=5000,
        cost_micros=99_000, outcome="finished", request_id="theirs",
    )  # fmt: skip


def test_usage_page_shows_my_use_by_model_with_a_chart_and_the_meter(client, user, records):
    client.force_login(user)
    response = client.get(reverse("budgets:usage"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "claude-mine" in html
    assert "1,200 of 200,000 tokens today" in html
    assert html.count("<svg viewBox") == 2
    assert "<rect" in html
    assert " style=" not in html
    assert "<script>" not in html


def test_usage_page_shows_nothing_of_another_users_use(client, user, records):
    client.force_login(user)
    html = client.get(reverse("budgets:usage")).content.decode()
    assert "gpt-theirs" not in html
    assert "5,000" not in html
