"""Budget tests run against the real Redis the suite starts; only budgets keys are flushed."""

from __future__ import annotations

import itertools

import pytest
import redis
from django.conf import settings

from budgets.models import Plan, Quota
from budgets.store import aclose_stores

_ids = itertools.count()


def flush_budget_keys() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        names = list(client.scan_iter(match="budgets:*", count=1000))
        if names:
            client.delete(*names)
    finally:
        client.close()


@pytest.fixture(autouse=True)
def clean_budget_keys():
    flush_budget_keys()
    yield
    flush_budget_keys()


@pytest.fixture
async def close_stores():
    """Close this test's event-loop Redis clients when it ends (async tests)."""
    yield
    await aclose_stores()


@pytest.fixture
def request_id():
    """A fresh request id each call."""
    return lambda: f"req-{next(_ids)}"


@pytest.fixture
def make_user(db, django_user_model, make_plan):
    """A user on a plan of their own with the given plan fields."""

    def make(username: str | None = None, **plan_fields):
        user = django_user_model.objects.create_user(username or f"user{next(_ids)}", password="pw")
        plan = make_plan(**plan_fields)
        Quota.objects.create(user=user, plan=plan)
        return user

    return make


@pytest.fixture
def make_plan(db):
    def make(**fields) -> Plan:
        fields.setdefault("name", f"plan-{next(_ids)}")
        fields.setdefault("daily_tokens", 100_000)
        fields.setdefault("requests_per_minute", 100_000)
        fields.setdefault("concurrent_streams", 1000)
        fields.setdefault("max_output_tokens", 100_000)
        return Plan.objects.create(**fields)

    return make
