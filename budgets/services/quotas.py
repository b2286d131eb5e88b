"""Operators' changes to plans and quotas, and their effect on the cached limits in Redis."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from budgets import keys
from budgets.days import budget_day, day_key
from budgets.models import MAX_DAILY_TOKENS, Plan, Quota
from budgets.selectors import quota_for_user
from budgets.store import STORE_ERRORS, sync_store

logger = logging.getLogger(__name__)
UNSET = object()
OVERRIDES = (
    "daily_tokens",
    "daily_cost_usd",
    "requests_per_minute",
    "concurrent_streams",
    "max_output_tokens",
)


def limits_invalidate(*, user_ids: Iterable[int] | None = None) -> None:
    """Drop cached limits: of some users, or (None) of everyone, by bumping the generation."""
    try:
        client = sync_store().client
        if user_ids is None:
            client.incr(keys.GEN_KEY)
        else:
            names = [keys.limits_key(keys.user_scope(uid)) for uid in user_ids]
            if names:
                client.delete(*names)
    except STORE_ERRORS as exc:  # cached limits expire by themselves
        logger.warning("budgets: could not invalidate cached limits: %s", exc)


def plan_save(*, plan: Plan) -> Plan:
    """Validate and save a plan; making it the default takes the flag from the old one."""
    plan.full_clean()
    with transaction.atomic():
        if plan.is_default:
            Plan.objects.filter(is_default=True).exclude(pk=plan.pk).update(is_default=False)
        plan.save()
    limits_invalidate()
    return plan


def quota_update(*, user_id: int, plan: Plan | None = None, **overrides: object) -> Quota:
    """Change a user's plan and overrides (None clears one: the plan's value applies)."""
    unknown = set(overrides) - set(OVERRIDES)
    if unknown:
        raise TypeError(f"unknown quota fields: {sorted(unknown)}")
    quota = quota_for_user(user_id=user_id)
    if plan is not None:
        quota.plan = plan
    for name, value in overrides.items():
        if name == "daily_cost_usd" and value is not None and not isinstance(value, Decimal):
            value = Decimal(str(value))
        setattr(quota, name, value)
    quota.full_clean()
    quota.save()
    limits_invalidate(user_ids=[user_id])
    return quota


def quota_save(*, quota: Quota) -> Quota:
    """Save a quota edited elsewhere (the admin) and drop its cached limits."""
    quota.full_clean()
    quota.save()
    limits_invalidate(user_ids=[quota.user_id])
    return quota


def quota_grant_extra_tokens(
    *, user_ids: Iterable[int], tokens: int, now: dt.datetime | None = None
) -> int:
    """Add `tokens` to what each user may use today (on top of earlier grants today)."""
    if not isinstance(tokens, int) or not 0 < tokens <= MAX_DAILY_TOKENS:
        raise ValidationError("Extra tokens must be a whole number between 1 and 10^12.")
    today = budget_day(now or timezone.now())
    ids = list(user_ids)
    with transaction.atomic():
        for user_id in ids:
            quota = quota_for_user(user_id=user_id)
            quota = Quota.objects.select_for_update().get(pk=quota.pk)
            base = quota.extra_tokens if quota.extra_tokens_day == today else 0
            quota.extra_tokens = min(MAX_DAILY_TOKENS, base + tokens)
            quota.extra_tokens_day = today
            quota.save(update_fields=["extra_tokens", "extra_tokens_day", "updated_at"])
    limits_invalidate(user_ids=ids)
    return len(ids)


def quota_reset_today(*, user_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Forget today's use so far: the ledger keeps the rows, they stop counting today."""
    now = now or timezone.now()
    day = day_key(now)
    ids = list(user_ids)
    for user_id in ids:
        quota = quota_for_user(user_id=user_id)
        quota.usage_reset_at = now
        quota.save(update_fields=["usage_reset_at", "updated_at"])
    client = sync_store().client
    with client.pipeline(transaction=True) as pipe:
        for user_id in ids:
            used = keys.used_key(keys.user_scope(user_id), day)
            pipe.hset(
                used,
                mapping={"tokens": 0, "cost": 0, "over_tokens": 0, "over_cost": 0, "seeded": 1},
            )
            pipe.expire(used, keys.DAY_KEY_TTL_SECONDS)
        pipe.execute()
    return len(ids)
