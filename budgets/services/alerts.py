"""Alerts to admins when a budget crosses a threshold of its daily limit (ALERTS_THRESHOLDS).

The settle script (lua/settle.lua) reports a crossing once per scope, threshold and day (SADD on
the day's `alerted` set), and the reserve script reports 100% when a full budget refuses a call.
Here a crossing becomes an Alert row, with a snapshot of the scope's use, and a delivery task
(budgets/tasks.py) on the "alerts" queue: e-mail and webhook happen there, never in the turn.

Exactly once: the row's unique (scope, day, threshold) constraint is the durable guarantee, so a
crossing reported again after Redis lost its `alerted` set finds the row and enqueues nothing.
The task is enqueued only for a row this call created, once the transaction commits.

Who is told (budgets/tasks.py reads it from the kind):
    user, team, provider  superusers with an e-mail, ALERTS_EMAILS, the webhook; for a team
                          also its team admins
    member                a member's cap within a team is the team's business: its team admins
                          only, by e-mail (no webhook, no superusers), so a large team does not
                          flood the organisation's channel
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.db import transaction

from budgets import keys
from budgets.days import day_bounds, parse_day_key
from budgets.models import MICROS_PER_USD, PROVIDER_CHOICES, Alert, Team
from budgets.scopes import Scope
from budgets.store import STORE_ERRORS, async_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A scope's use on the alert's day, as the settle that crossed the threshold left it."""

    tokens_used: int
    tokens_limit: int | None
    cost_used_micros: int
    cost_limit_micros: int | None
    label: str
    resets_at: dt.datetime


async def alerts_raise(*, scopes: Sequence[Scope], crossings: Sequence[str], day: str) -> None:
    """Record and send one alert per crossing '<scope index>:<percent>'; never raises.

    Called from budget_reserve/budget_settle right after the script reported a first crossing
    (at most len(ALERTS_THRESHOLDS) per scope per day), so it costs one Redis round trip and one
    small database write per crossing; delivery is a task.
    """
    for crossing in crossings:
        try:
            index, _, percent = crossing.partition(":")
            scope, threshold = scopes[int(index)], int(percent)
            snapshot = await _snapshot(scope=scope, day=day)
            await sync_to_async(alert_record)(
                scope=scope, threshold=threshold, day=parse_day_key(day), snapshot=snapshot
            )
        except Exception:  # an alert must never break a turn
            logger.exception("budgets: alert for crossing %r of %s not recorded", crossing, day)


def _limit(mapping: dict[str, str], name: str) -> int | None:
    value = int(mapping.get(name) or -1)
    return None if value < 0 else value


async def _snapshot(*, scope: Scope, day: str) -> Snapshot:
    """The scope's limits and that day's use, read as the script left them (one round trip).

    Redis away: an empty snapshot; the alert is still recorded (the crossing is real).
    """
    limits: dict[str, str] = {}
    used: dict[str, str] = {}
    try:
        async with async_store().client.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.limits_key(scope))
            pipe.hgetall(keys.used_key(scope, day))
            limits, used = await pipe.execute()
    except STORE_ERRORS as exc:
        logger.warning("budgets: no usage snapshot of %s for its alert: %s", scope, exc)
    tokens_limit = _limit(limits, "daily_tokens")
    if tokens_limit is not None and limits.get("extra_day") == day:
        tokens_limit += int(limits.get("extra_tokens") or 0)
    return Snapshot(
        tokens_used=int(used.get("tokens") or 0),
        tokens_limit=tokens_limit,
        cost_used_micros=int(used.get("cost") or 0),
        cost_limit_micros=_limit(limits, "daily_cost"),
        label=limits.get("label", ""),
        resets_at=day_bounds(parse_day_key(day))[1].astimezone(dt.UTC),
    )


def alert_record(*, scope: Scope, threshold: int, day: dt.date, snapshot: Snapshot) -> bool:
    """Create the Alert of (scope, day, threshold) unless it exists; enqueue its delivery.

    Returns whether it was created. The enqueue waits for the commit, so the worker always
    finds the row.
    """
    subject, message = alert_text(scope=scope, threshold=threshold, day=day, snapshot=snapshot)
    alert, created = Alert.objects.get_or_create(
        scope=scope.key,
        day=day,
        threshold=threshold,
        defaults={
            "kind": scope.kind,
            "user_id": scope.user_id if scope.kind in ("user", "member") else None,
            "team": Team.objects.filter(pk=scope.team_id).first() if scope.team_id else None,
            "provider": scope.provider,
            "subject": subject[:200],
            "message": message,
            "used_tokens": snapshot.tokens_used,
            "limit_tokens": snapshot.tokens_limit,
            "used_cost_micros": snapshot.cost_used_micros,
            "limit_cost_micros": snapshot.cost_limit_micros,
        },
    )
    if created:
        logger.info("budgets: alert %s: %s", alert.pk, subject)
        transaction.on_commit(lambda: _enqueue(alert.pk))
    return created


def _enqueue(alert_id: int) -> None:
    # Imported here: the task module must stay out of the reservation path's import chain.
    from budgets.tasks import alert_deliver

    try:
        alert_deliver.enqueue(alert_id)
    except Exception:  # the row stays pending; the admin's "resend" action enqueues it again
        logger.exception("budgets: delivery of alert %s could not be enqueued", alert_id)


def _usd(micros: int) -> str:
    return f"${micros / MICROS_PER_USD:,.2f}"


def _amounts(snapshot: Snapshot) -> str:
    """'800,000 of 1,000,000 tokens; $1.20 of $5.00': each limit the scope has."""
    parts = []
    if snapshot.tokens_limit is not None:
        parts.append(f"{snapshot.tokens_used:,} of {snapshot.tokens_limit:,} tokens")
    if snapshot.cost_limit_micros is not None:
        parts.append(f"{_usd(snapshot.cost_used_micros)} of {_usd(snapshot.cost_limit_micros)}")
    return "; ".join(parts) or f"{snapshot.tokens_used:,} tokens"


def _username(user_id: int | None) -> str:
    name = get_user_model().objects.filter(pk=user_id).values_list("username", flat=True).first()
    return name or f"#{user_id}"


def _team_name(scope: Scope, snapshot: Snapshot) -> str:
    name = Team.objects.filter(pk=scope.team_id).values_list("name", flat=True).first()
    return name or snapshot.label or f"#{scope.team_id}"


def alert_text(
    *, scope: Scope, threshold: int, day: dt.date, snapshot: Snapshot
) -> tuple[str, str]:
    """The subject and message of an alert, in words an admin can act on."""
    reached = threshold >= 100
    resets = snapshot.resets_at.strftime("%H:%M UTC")
    amounts = _amounts(snapshot)
    if scope.kind == "provider":
        provider = dict(PROVIDER_CHOICES).get(scope.provider) or snapshot.label or scope.provider
        cap = _usd(snapshot.cost_limit_micros or 0)
        if reached:
            subject = f"The {provider} cap of {cap} a day is reached"
            effect = f"calls to {provider} are refused for everyone until {resets}."
        else:
            subject = f"{provider} has used {threshold}% of the organisation's daily cap of {cap}"
            effect = f"at {cap}, calls to {provider} are refused for everyone until {resets}."
    elif scope.kind == "team":
        team = _team_name(scope, snapshot)
        if reached:
            subject = f"Team {team} has reached its daily budget"
            effect = f"calls billed to {team} are refused until {resets}."
        else:
            subject = f"Team {team} has used {threshold}% of its daily budget"
            effect = f"when it is used up, calls billed to {team} are refused until {resets}."
    elif scope.kind == "member":
        who, team = _username(scope.user_id), _team_name(scope, snapshot)
        if reached:
            subject = f"{who} has reached their daily cap in team {team}"
            effect = f"their calls billed to {team} are refused until {resets}."
        else:
            subject = f"{who} has used {threshold}% of their daily cap in team {team}"
            effect = f"at the cap, their calls billed to {team} are refused until {resets}."
    else:
        who = _username(scope.user_id)
        if reached:
            subject = f"User {who} has reached their daily budget"
            effect = f"their calls are refused until {resets}."
        else:
            subject = f"User {who} has used {threshold}% of their daily budget"
            effect = f"when it is used up, their calls are refused until {resets}."
    message = f"{subject} ({amounts}) on {day.isoformat()}: {effect}"
    if reached and not _full(snapshot):
        # The reserve script marks 100% when the budget refuses a call that no longer fits.
        message += " What is left is too little for the calls being made, so they are refused."
    return subject, message


def _full(snapshot: Snapshot) -> bool:
    return any(
        limit is not None and used >= limit
        for used, limit in (
            (snapshot.tokens_used, snapshot.tokens_limit),
            (snapshot.cost_used_micros, snapshot.cost_limit_micros),
        )
    )
