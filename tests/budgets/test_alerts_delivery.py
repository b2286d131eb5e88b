"""Alert delivery: a real worker posts to a local webhook receiver and writes e-mail files.

The receiver is an http.server on 127.0.0.1 that counts POSTs; crossings come from the real
reserve and settle scripts in this process, delivery from `manage.py run_worker` in another.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from decimal import Decimal
from email import message_from_string
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from budgets.errors import BudgetRefused
from budgets.models import Alert, ProviderCap, Team, TeamMembership
from budgets.services import budget_settle
from budgets.store import aclose_stores
from budgets.tasks import alert_deliver
from chat.worker import SWEEP_LOCK_KEY
from tests.budgets.helpers import reserve
from tests.conftest import live_env
from tests.workers import TaskWorker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


class Receiver:
    """A webhook on 127.0.0.1: records each POST's JSON; answers 500 to the first `fail` calls.

    With `hold` set, each call waits for `release` before it is answered.
    """

    def __init__(self, *, fail: int = 0, hold: bool = False) -> None:
        self.fail = fail
        self.calls: list[dict] = []
        self.times: list[float] = []
        self.events: list[str] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                payload = json.loads(body)
                assert self.headers["Content-Type"] == "application/json"
                receiver.calls.append(payload)
                receiver.times.append(time.monotonic())
                receiver.events.append("received")
                receiver.release.wait(timeout=60)
                status = 500 if len(receiver.calls) <= receiver.fail else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"boom" if status == 500 else b"ok")
                receiver.events.append("answered")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hooks/alerts"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def start_worker(sandbox_server, tmp_path):
    """Start a real worker with these alert settings (e-mails as files in tmp_path/mail)."""
    workers: list[TaskWorker] = []

    def start(receiver: Receiver, **env: str) -> TaskWorker:
        worker = TaskWorker(
            env={
                **live_env(sandbox_server),
                "ALERTS_WEBHOOK_URL": receiver.url,
                "ALERTS_RETRY_SECONDS": "0.2",
                "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
                "EMAIL_FILE_PATH": str(tmp_path / "mail"),
                **env,
            }
        )
        workers.append(worker.start())
        return worker

    yield start
    for worker in workers:
        worker.stop()


def mails(folder: Path) -> list:
    """Every message the file-based backend wrote (a file may hold several)."""
    found = []
    for path in sorted(folder.glob("*.log")) if folder.exists() else []:
        for chunk in path.read_text().split("-" * 79):
            if chunk.strip():
                found.append(message_from_string(chunk.strip()))
    return found


def delivered(worker: TaskWorker, *, scope: str | None = None) -> list[Alert]:
    """Wait until every alert (of `scope`) has left pending on both channels."""

    def done() -> list[Alert] | None:
        assert worker.process.poll() is None, worker.output()
        rows = Alert.objects.order_by("scope", "threshold")
        rows = list(rows.filter(scope=scope) if scope else rows)
        settled = rows and all("pending" not in (a.email_status, a.webhook_status) for a in rows)
        return rows if settled else None

    try:
        return wait_until(done, timeout=30, what="alerts delivered")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{worker.output()}") from None


def run_calls(*, user_id: int, count: int, team_id: int | None = None, tokens: int = 400) -> None:
    """`count` concurrent reserve + settle pairs, from this (sync) test."""

    async def call() -> None:
        try:
            reservation = await reserve(user_id, team_id=team_id)
        except BudgetRefused:
            return
        await budget_settle(reservation=reservation, tokens_used=tokens, cost_micros=1_000)

    async def main() -> None:
        try:
            await asyncio.gather(*(call() for _ in range(count)))
        finally:
            await aclose_stores()

    async_to_sync(main)()


def test_one_webhook_call_and_one_email_per_threshold_under_concurrent_crossings(
    start_worker, make_user, tmp_path
):
    get_user_model().objects.create_superuser("root", email="root@example.com", password="pw")
    get_user_model().objects.create_superuser("nomail", email="", password="pw")
    ada = make_user("ada", daily_tokens=10**7)
    boss = make_user("boss", daily_tokens=10**7)
    get_user_model().objects.filter(pk=boss.pk).update(email="boss@example.com")
    team = Team.objects.create(name="Research", daily_tokens=20_000)
    TeamMembership.objects.create(team=team, user=ada)
    TeamMembership.objects.create(team=team, user=boss, role=TeamMembership.Role.ADMIN)
    with Receiver() as receiver:
        worker = start_worker(receiver, ALERTS_EMAILS="ops@example.com,ROOT@example.com")
        run_calls(user_id=ada.id, team_id=team.id, count=60)  # 24,000 tokens at once
        alerts = delivered(worker)

        assert [(a.scope, a.threshold) for a in alerts] == [
            (f"team:{team.id}", 80),
            (f"team:{team.id}", 100),
        ]
        wait_until(
            lambda: not DBTaskResult.objects.filter(finished_at__isnull=True).exists(),
            what="no task left",
        )
        assert len(receiver.calls) == 2
        assert sorted(call["text"] for call in receiver.calls) == sorted(a.message for a in alerts)
        assert all(call["scope"] == f"team:{team.id}" for call in receiver.calls)
    for alert in alerts:
        assert (alert.webhook_status, alert.webhook_attempts, alert.last_error) == ("sent", 1, "")
        assert alert.email_status == "sent"
        assert alert.email_recipients == "root@example.com, ops@example.com, boss@example.com"
    sent = mails(tmp_path / "mail")
    assert sorted(m["Subject"] for m in sent) == sorted(a.subject for a in alerts)
    assert {m["To"] for m in sent} == {"root@example.com, ops@example.com, boss@example.com"}


def test_a_member_cap_alert_is_emailed_to_the_team_admins_only(start_worker, make_user, tmp_path):
    get_user_model().objects.create_superuser("root", email="root@example.com", password="pw")
    ada = make_user("ada", daily_tokens=10**7)
    boss = make_user("boss", daily_tokens=10**7)
    get_user_model().objects.filter(pk=boss.pk).update(email="boss@example.com")
    team = Team.objects.create(name="Research", daily_tokens=10**6)
    TeamMembership.objects.create(team=team, user=ada, daily_tokens_cap=1_000)
    TeamMembership.objects.create(team=team, user=boss, role=TeamMembership.Role.ADMIN)
    with Receiver() as receiver:
        worker = start_worker(receiver)
        run_calls(user_id=ada.id, team_id=team.id, count=1, tokens=850)
        [alert] = delivered(worker)
        assert receiver.calls == []
    assert (alert.kind, alert.threshold) == ("member", 80)
    assert (alert.email_status, alert.webhook_status) == ("sent", "skipped")
    assert [m["To"] for m in mails(tmp_path / "mail")] == ["boss@example.com"]


def test_a_failing_webhook_is_retried_with_backoff_until_it_answers(start_worker, make_user):
    ada = make_user("ada", daily_tokens=1_000)
    with Receiver(fail=2) as receiver:
        worker = start_worker(receiver)
        run_calls(user_id=ada.id, count=1, tokens=850)
        [alert] = delivered(worker)
        assert len(receiver.calls) == 3
        first, second, third = receiver.times
    assert (alert.webhook_status, alert.webhook_attempts) == ("sent", 3)
    assert alert.webhook_sent_at is not None
    # The last failure is kept for the record; the status says how it ended.
    assert alert.last_error == "webhook attempt 2 of 5: HTTP 500: boom"
    # The retries waited their backoff: 0.2 s, then 0.4 s (+-20%).
    assert second - first >= 0.16
    assert third - second >= 0.32
    assert alert.email_status == "skipped"  # nobody has an e-mail address


def test_a_webhook_that_always_fails_is_marked_failed_after_max_attempts(start_worker, make_user):
    ada = make_user("ada", daily_tokens=1_000)
    with Receiver(fail=10**6) as receiver:
        worker = start_worker(receiver, ALERTS_MAX_ATTEMPTS="3")
        run_calls(user_id=ada.id, count=1, tokens=850)
        [alert] = delivered(worker)
        assert len(receiver.calls) == 3
    assert (alert.webhook_status, alert.webhook_attempts) == ("failed", 3)
    assert alert.last_error == "webhook attempt 3 of 3: HTTP 500: boom"


def test_a_turn_never_waits_on_the_webhook(make_user, settings):
    """The settle that crosses 80% returns before delivery has even started."""
    settings.ALERTS_WEBHOOK_URL = "set below"
    ada = make_user("ada", daily_tokens=1_000)
    with Receiver(hold=True) as receiver:
        settings.ALERTS_WEBHOOK_URL = receiver.url
        run_calls(user_id=ada.id, count=1, tokens=850)
        receiver.events.append("settled")
        alert = Alert.objects.get()
        assert (alert.threshold, alert.webhook_status, receiver.calls) == (80, "pending", [])
        task = DBTaskResult.objects.get(queue_name="alerts")
        assert (task.status, task.args_kwargs["args"]) == ("READY", [alert.pk])

        delivery = threading.Thread(target=alert_deliver.call, args=(alert.pk,))
        delivery.start()
        wait_until(lambda: receiver.calls, what="the webhook call")
        receiver.release.set()
        delivery.join(timeout=30)
    assert receiver.events == ["settled", "received", "answered"]
    alert.refresh_from_db()
    assert (alert.webhook_status, alert.webhook_attempts) == ("sent", 1)


def test_an_unreachable_webhook_schedules_the_next_attempt_with_backoff(settings, make_user):
    """A network error is recorded and the task enqueues itself for later: it never sleeps."""
    with Receiver() as closed:
        url = closed.url
    settings.ALERTS_WEBHOOK_URL = url  # nothing listens there any more
    settings.ALERTS_RETRY_SECONDS = 30.0
    ProviderCap.objects.create(provider="anthropic", daily_cost_usd=Decimal("0.01"))
    ada = make_user("ada", daily_tokens=10**7)
    run_calls(user_id=ada.id, count=1, tokens=100)  # $0.001 of $0.01: nothing crossed
    with pytest.raises(BudgetRefused):
        async_to_sync(reserve)(ada.id, prompt_tokens=20_000, input_price_micros_per_mtok=10**6)
    alert = Alert.objects.get(scope="provider:anthropic", threshold=100)
    DBTaskResult.objects.all().delete()

    before = timezone.now()
    assert alert_deliver.call(alert.pk).startswith("email skipped, webhook retrying in")
    alert.refresh_from_db()
    assert (alert.webhook_status, alert.webhook_attempts) == ("pending", 1)
    assert alert.last_error.startswith("webhook attempt 1 of 5: URLError: ")
    retry = DBTaskResult.objects.get(queue_name="alerts")
    assert retry.args_kwargs["args"] == [alert.pk, 1]
    assert before + dt.timedelta(seconds=24) <= retry.run_after
    assert retry.run_after <= timezone.now() + dt.timedelta(seconds=36)

    # The same attempt run again (a worker died after enqueueing the retry) posts nothing.
    assert alert_deliver.call(alert.pk, 0) == "email skipped, webhook stale"
    assert Alert.objects.get(pk=alert.pk).webhook_attempts == 1


def test_a_worker_starting_up_delivers_an_alert_a_crash_left_pending(start_worker):
    """A worker died after claiming webhook attempt 1 and before posting it: nothing would
    ever post again, but the next worker's sweep (at start) finds the alert and finishes it."""
    stuck = Alert.objects.create(
        kind="provider", scope="provider:openai", day=timezone.localdate(), threshold=80,
        subject="OpenAI at 80%", message="OpenAI has used 80% of its cap.",
        email_status="skipped", webhook_attempts=1,
        created_at=timezone.now() - dt.timedelta(hours=1),
    )  # fmt: skip
    # The sweep runs once per heartbeat period in one worker, under a lock that an earlier
    # test's worker may still hold: clear it, and sweep every second.
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(SWEEP_LOCK_KEY)
    client.close()
    with Receiver() as receiver:
        start_worker(receiver, ALERTS_MAX_ATTEMPTS="3", TASKS_WORKER_HEARTBEAT_SECONDS="1")
        wait_until(lambda: Alert.objects.get(pk=stuck.pk).webhook_status == "sent", timeout=30)
        assert [call["text"] for call in receiver.calls] == ["OpenAI has used 80% of its cap."]
    stuck.refresh_from_db()
    assert stuck.webhook_attempts == 2
