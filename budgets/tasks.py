"""Background tasks of the budgets app: delivering alerts (budgets/services/alerts.py).

`alert_deliver` sends an Alert by e-mail (Django's mail settings) and to ALERTS_WEBHOOK_URL (a
Slack-compatible incoming webhook: JSON with "text"). It is idempotent, as every task must be
(chat/worker.py runs a task again when its worker died):
- the e-mail is sent at most once: a run claims it (sets email_sent_at while still pending)
  with a conditional update before sending, so a second run, or a run after a crash between
  claim and send, does not send it again;
- the webhook is posted until it answers 2xx, at most ALERTS_MAX_ATTEMPTS times. A failed
  attempt records webhook_attempts and last_error and enqueues this task again for later
  (ALERTS_RETRY_SECONDS * 2**(attempt - 1), +-20% jitter): the worker never sleeps. Each run
  carries the attempt it is for, so a stale run (the previous attempt run again) does nothing.
last_error keeps the last failure even once a later attempt succeeded, so the history shows why
delivery took several attempts; the statuses say how it ended.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import urllib.error
import urllib.request

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone
from django_tasks import task

from budgets.models import Alert, TeamMembership
from budgets.store import sync_store

logger = logging.getLogger(__name__)

Delivery = Alert.Delivery
JITTER = 0.2
ERROR_BODY_CHARS = 200


@task(queue_name="alerts")
def alert_deliver(alert_id: int, webhook_attempt: int = 0) -> str:
    """Send the alert by e-mail (once) and to the webhook (retried); returns what happened."""
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        return "gone"
    email = alert_email_send(alert=alert)
    webhook = alert_webhook_post(alert=alert, attempt=webhook_attempt)
    return f"email {email}, webhook {webhook}"


def alert_recipients(*, alert: Alert) -> list[str]:
    """Who is e-mailed: see budgets/services/alerts.py. Unique addresses, in a stable order."""
    addresses: list[str] = []
    if alert.kind != Alert.Kind.MEMBER:
        addresses += (
            get_user_model()
            .objects.filter(is_superuser=True, is_active=True)
            .exclude(email="")
            .order_by("pk")
            .values_list("email", flat=True)
        )
        addresses += settings.ALERTS_EMAILS
    if alert.team_id is not None and alert.kind in (Alert.Kind.TEAM, Alert.Kind.MEMBER):
        addresses += (
            TeamMembership.objects.filter(
                team_id=alert.team_id, role=TeamMembership.Role.ADMIN, user__is_active=True
            )
            .exclude(user__email="")
            .order_by("pk")
            .values_list("user__email", flat=True)
        )
    seen: set[str] = set()
    unique = []
    for address in addresses:
        if address and address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def alert_email_send(*, alert: Alert) -> str:
    """E-mail the alert unless it was already sent or claimed; the resulting email_status."""
    if alert.email_status != Delivery.PENDING or alert.email_sent_at is not None:
        return alert.email_status
    recipients = alert_recipients(alert=alert)
    pending = Alert.objects.filter(pk=alert.pk, email_status=Delivery.PENDING)
    if not recipients:
        pending.update(email_status=Delivery.SKIPPED)
        return Delivery.SKIPPED
    claimed = pending.filter(email_sent_at__isnull=True).update(
        email_sent_at=timezone.now(), email_recipients=", ".join(recipients)
    )
    if not claimed:  # another run has it
        return alert.email_status
    try:
        send_mail(
            subject=alert.subject,
            message=alert.message,
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=recipients,
        )
    except Exception as exc:  # SMTP down, refused...: recorded; the admin can resend
        logger.warning("budgets: alert %s e-mail failed: %s", alert.pk, exc)
        Alert.objects.filter(pk=alert.pk).update(
            email_status=Delivery.FAILED,
            email_sent_at=None,
            last_error=f"e-mail: {type(exc).__name__}: {exc}"[:2000],
        )
        return Delivery.FAILED
    Alert.objects.filter(pk=alert.pk).update(email_status=Delivery.SENT)
    return Delivery.SENT


def webhook_payload(*, alert: Alert) -> dict[str, object]:
    """What the webhook receives: Slack's incoming-webhook "text" (plus fields for others)."""
    return {
        "text": alert.message,
        "subject": alert.subject,
        "kind": alert.kind,
        "scope": alert.scope,
        "day": alert.day.isoformat(),
        "threshold": alert.threshold,
    }


def _post(url: str, payload: dict[str, object]) -> str | None:
    """POST the payload as JSON; None on a 2xx answer, else why it failed.

    urllib (the standard library) is enough for one small POST; it raises HTTPError for any
    status it does not follow, and URLError or OSError for the network.
    """
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "chatsite-alerts"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.ALERTS_WEBHOOK_TIMEOUT) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        body = exc.read(ERROR_BODY_CHARS).decode(errors="replace")
        return f"HTTP {exc.code}: {body}".strip()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def retry_delay(*, attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1-based): exponential, with jitter."""
    base = settings.ALERTS_RETRY_SECONDS * 2 ** (attempt - 1)
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def alert_webhook_post(*, alert: Alert, attempt: int) -> str:
    """Post attempt number attempt + 1 to the webhook; on failure, enqueue the next one later.

    Returns the resulting webhook_status. A run whose attempt is not the alert's next one
    (a stale or repeated run) changes nothing.
    """
    if alert.webhook_status != Delivery.PENDING:
        return alert.webhook_status
    url = settings.ALERTS_WEBHOOK_URL
    if alert.kind == Alert.Kind.MEMBER or not url:
        Alert.objects.filter(pk=alert.pk, webhook_status=Delivery.PENDING).update(
            webhook_status=Delivery.SKIPPED
        )
        return Delivery.SKIPPED
    this = attempt + 1
    claimed = Alert.objects.filter(
        pk=alert.pk, webhook_status=Delivery.PENDING, webhook_attempts=attempt
    ).update(webhook_attempts=this)
    if not claimed:
        return "stale"
    error = _post(url, webhook_payload(alert=alert))
    row = Alert.objects.filter(pk=alert.pk)
    if error is None:
        row.update(webhook_status=Delivery.SENT, webhook_sent_at=timezone.now())
        return Delivery.SENT
    text = f"webhook attempt {this} of {settings.ALERTS_MAX_ATTEMPTS}: {error}"[:2000]
    if this >= settings.ALERTS_MAX_ATTEMPTS:
        logger.error("budgets: alert %s webhook gave up: %s", alert.pk, text)
        row.update(webhook_status=Delivery.FAILED, last_error=text)
        return Delivery.FAILED
    delay = retry_delay(attempt=this)
    logger.warning("budgets: alert %s %s; retrying in %.1f s", alert.pk, text, delay)
    row.update(last_error=text)
    later = timezone.now() + dt.timedelta(seconds=delay)
    alert_deliver.using(run_after=later).enqueue(alert.pk, this)
    return f"retrying in {delay:.1f} s"


def alerts_resend(*, alert_ids: list[int]) -> int:
    """Deliver alerts again (admin action): failed channels back to pending, then enqueued.

    Also enqueues alerts still pending (say their first enqueue failed). That never doubles a
    delivery: the e-mail is claimed once, and the run carries the webhook's current attempt, so
    of it and a retry already scheduled for that attempt only one posts. A failed webhook gets
    a fresh series of ALERTS_MAX_ATTEMPTS attempts. Returns how many were enqueued.
    """
    count = 0
    for alert in Alert.objects.filter(pk__in=alert_ids):
        changes: dict[str, object] = {}
        if alert.email_status == Delivery.FAILED:
            changes.update(email_status=Delivery.PENDING, email_sent_at=None)
        if alert.webhook_status == Delivery.FAILED:
            changes.update(webhook_status=Delivery.PENDING, webhook_attempts=0)
        if changes:
            Alert.objects.filter(pk=alert.pk).update(**changes)
        attempts = changes.get("webhook_attempts", alert.webhook_attempts)
        statuses = {
            changes.get("email_status", alert.email_status),
            changes.get("webhook_status", alert.webhook_status),
        }
        if Delivery.PENDING in statuses:
            alert_deliver.enqueue(alert.pk, attempts)
            count += 1
    return count


REDELIVER_KEY = "budgets:alert-redeliver:{alert_id}"


def stuck_after_seconds() -> float:
    """How long an alert may stay pending before it counts as stuck: the whole webhook retry
    schedule (every backoff at its longest jitter) plus five minutes for a busy queue."""
    schedule = settings.ALERTS_RETRY_SECONDS * (2 ** (settings.ALERTS_MAX_ATTEMPTS - 1) - 1)
    return schedule * (1 + JITTER) + 300


def alerts_redeliver_stuck(*, now: dt.datetime | None = None) -> int:
    """Enqueue delivery again for alerts a crash left pending; returns how many.

    Two crashes leave an alert pending with no task to finish it: the process that recorded
    it died before its after-commit enqueue, or a worker died between claiming a webhook
    attempt and posting it (its re-run is then stale). The worker's periodic sweep
    (chat/worker.py) calls this. An alert pending longer than its whole retry schedule is
    enqueued again at the attempt it stands at, at most once per schedule (a Redis marker),
    from the last two days only. That never sends twice: the e-mail is claimed once (one
    claimed but never sent stays unsent: at most once), and of two runs for one webhook
    attempt only one posts.
    """
    now = now or timezone.now()
    horizon = stuck_after_seconds()
    stuck = Alert.objects.filter(
        Q(email_status=Delivery.PENDING, email_sent_at__isnull=True)
        | Q(webhook_status=Delivery.PENDING),
        created_at__lt=now - dt.timedelta(seconds=horizon),
        created_at__gte=now - dt.timedelta(days=2),
    ).values_list("pk", "webhook_attempts")
    client = sync_store().client
    count = 0
    for alert_id, attempts in stuck:
        marker = REDELIVER_KEY.format(alert_id=alert_id)
        if client.set(marker, "1", nx=True, px=int(horizon * 1000)):
            logger.warning("budgets: alert %s was left pending; delivering it again", alert_id)
            alert_deliver.enqueue(alert_id, attempts)
            count += 1
    return count
