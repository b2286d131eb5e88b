"""Budget alerts are recorded once per scope, threshold and day, and their delivery enqueued.

Against the suite's real Redis: crossings come from the real reserve and settle scripts.
Delivery itself (a real worker, a local webhook receiver, e-mail files) is in
test_alerts_delivery.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
import redis
from asgiref.sync import sync_to_async
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from budgets import keys
from budgets.days import budget_day, day_key
from budgets.errors import BudgetRefused
from budgets.models import Alert, ProviderCap, Team, TeamMembership
from budgets.services import budget_settle
from tests.budgets.conftest import flush_budget_keys
from tests.budgets.helpers import reserve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_stores")]

DOLLAR = 1_000_000  # micro-dollars


async def settle(reservation, tokens: int, cost: int = 0):
    return await budget_settle(reservation=reservation, tokens_used=tokens, cost_micros=cost)


async def alerts(scope: str) -> list[tuple[int, str]]:
    rows = Alert.objects.filter(scope=scope).order_by("threshold")
    return [(a.threshold, a.kind) async for a in rows]


async def deliveries() -> int:
    """Delivery tasks enqueued so far (no worker runs in this module)."""
    return await DBTaskResult.objects.filter(
        queue_name="alerts", task_path="budgets.tasks.alert_deliver"
    ).acount()


@sync_to_async
def make_team(*, users, daily_tokens: int, admins=(), name: str = "Research") -> Team:
    team = Team.objects.create(name=name, daily_tokens=daily_tokens)
    for user in users:
        role = TeamMembership.Role.ADMIN if user in admins else TeamMembership.Role.MEMBER
        TeamMembership.objects.create(team=team, user=user, role=role)
    return team


async def test_a_user_crossing_80_then_100_percent_gets_one_alert_per_threshold(make_user):
    user = await sync_to_async(make_user)("ada", daily_tokens=10_000)
    scope = f"user:{user.id}"
    first, second, third = [await reserve(user.id) for _ in range(3)]

    await settle(first, 8_000)
    assert await alerts(scope) == [(80, "user")]
    await settle(second, 500)  # 85%: past 80 again, but it was already told today
    assert await alerts(scope) == [(80, "user")]
    await settle(third, 1_500)  # 100%
    assert await alerts(scope) == [(80, "user"), (100, "user")]
    assert await deliveries() == 2

    alert = await Alert.objects.aget(scope=scope, threshold=80)
    assert alert.user_id == user.id
    assert alert.day == budget_day(timezone.now())
    assert (alert.used_tokens, alert.limit_tokens) == (8_000, 10_000)
    assert alert.subject == "User ada has used 80% of their daily budget"
    assert "8,000 of 10,000 tokens" in alert.message
    assert (alert.email_status, alert.webhook_status) == ("pending", "pending")
    full = await Alert.objects.aget(scope=scope, threshold=100)
    assert full.subject == "User ada has reached their daily budget"
    assert "their calls are refused until" in full.message


async def test_a_settle_that_jumps_past_both_thresholds_records_both(make_user):
    user = await sync_to_async(make_user)(daily_tokens=1_000)
    await settle(await reserve(user.id), 1_200)
    assert await alerts(f"user:{user.id}") == [(80, "user"), (100, "user")]


async def test_a_team_crossing_its_budget_is_alerted_once_per_threshold(make_user):
    ada = await sync_to_async(make_user)("ada", daily_tokens=10**7)
    team = await make_team(users=[ada], admins=[ada], daily_tokens=10_000)
    scope = f"team:{team.id}"
    calls = [await reserve(ada.id, team_id=team.id) for _ in range(3)]

    await settle(calls[0], 8_100)
    await settle(calls[1], 100)
    assert await alerts(scope) == [(80, "team")]
    await settle(calls[2], 2_000)
    assert await alerts(scope) == [(80, "team"), (100, "team")]
    alert = await Alert.objects.aget(scope=scope, threshold=80)
    assert alert.team_id == team.id
    assert alert.subject == "Team Research has used 80% of its daily budget"
    assert "8,100 of 10,000 tokens" in alert.message
    # The user's own budget (10 million tokens) and the uncapped member were never near.
    assert await alerts(f"user:{ada.id}") == []
    assert await alerts(f"member:{team.id}:{ada.id}") == []


async def test_a_member_cap_is_alerted_as_the_members_own_kind(make_user):
    ada = await sync_to_async(make_user)("ada", daily_tokens=10**7)
    team = await make_team(users=[ada], daily_tokens=100_000)
    await TeamMembership.objects.filter(team=team).aupdate(daily_tokens_cap=1_000)
    await settle(await reserve(ada.id, team_id=team.id), 900)
    alert = await Alert.objects.aget(scope=f"member:{team.id}:{ada.id}")
    assert (alert.kind, alert.threshold, alert.user_id, alert.team_id) == (
        "member",
        80,
        ada.id,
        team.id,
    )
    assert alert.subject == "ada has used 80% of their daily cap in team Research"


async def test_a_provider_cap_is_alerted_once_per_threshold(make_user):
    await ProviderCap.objects.acreate(provider="anthropic", daily_cost_usd=Decimal("2.00"))
    users = [await sync_to_async(make_user)(daily_tokens=10**7) for _ in range(2)]
    calls = [await reserve(u.id) for u in users for _ in range(2)]

    await settle(calls[0], 100, DOLLAR)  # 50%
    await settle(calls[2], 100, DOLLAR * 7 // 10)  # 85%, by another user
    await settle(calls[1], 100, DOLLAR // 20)  # 87.5%
    assert await alerts("provider:anthropic") == [(80, "provider")]
    await settle(calls[3], 100, DOLLAR)
    assert await alerts("provider:anthropic") == [(80, "provider"), (100, "provider")]
    full = await Alert.objects.aget(scope="provider:anthropic", threshold=100)
    assert full.provider == "anthropic"
    assert full.subject == "The Anthropic cap of $2.00 a day is reached"
    assert "calls to Anthropic are refused for everyone until" in full.message
    assert "$2.75 of $2.00" in full.message


async def test_a_provider_cap_refusing_a_call_is_alerted_at_100_percent_below_it(make_user):
    await ProviderCap.objects.acreate(provider="anthropic", daily_cost_usd=Decimal("0.01"))
    user = await sync_to_async(make_user)(daily_tokens=10**7)
    await settle(await reserve(user.id), 100, 8_500)  # 85% of the cap
    assert await alerts("provider:anthropic") == [(80, "provider")]

    with pytest.raises(BudgetRefused) as refused:  # its prompt alone costs $0.002
        await reserve(user.id, prompt_tokens=2_000, input_price_micros_per_mtok=DOLLAR)
    assert refused.value.scope == "provider:anthropic"
    assert await alerts("provider:anthropic") == [(80, "provider"), (100, "provider")]
    full = await Alert.objects.aget(scope="provider:anthropic", threshold=100)
    assert full.used_cost_micros == 8_500
    assert "too little for the calls being made" in full.message

    with pytest.raises(BudgetRefused):  # refused again: admins were already told
        await reserve(user.id, prompt_tokens=2_000, input_price_micros_per_mtok=DOLLAR)
    assert await Alert.objects.filter(scope="provider:anthropic").acount() == 2
    assert await deliveries() == 2


async def test_concurrent_crossings_record_exactly_one_alert_per_scope_and_threshold(
    make_user, settings
):
    """60 calls of one team, at once, take every scope they count against past 80% and 100%."""
    settings.BUDGETS_REDIS_POOL_WAIT = 30.0  # the count is under test, not the pool's patience
    await ProviderCap.objects.acreate(provider="anthropic", daily_cost_usd=Decimal("0.05"))
    ada = await sync_to_async(make_user)("ada", daily_tokens=20_000)
    team = await make_team(users=[ada], daily_tokens=20_000)
    await TeamMembership.objects.filter(team=team).aupdate(daily_tokens_cap=20_000)
    scopes = {
        f"user:{ada.id}": "user",
        f"member:{team.id}:{ada.id}": "member",
        f"team:{team.id}": "team",
        "provider:anthropic": "provider",
    }

    async def call() -> None:
        try:
            reservation = await reserve(ada.id, team_id=team.id)
        except BudgetRefused:
            return  # the budgets are full: a refusal may be what marks 100%
        await settle(reservation, 400, 1_000)  # 60 x: 24,000 tokens, $0.06

    await asyncio.gather(*(call() for _ in range(60)))
    for scope, kind in scopes.items():
        assert await alerts(scope) == [(80, kind), (100, kind)], scope
    assert await deliveries() == 8

    # Redis loses today's counters and `alerted` sets; the ledger is empty, so they rebuild to
    # zero and the next 80% is a first crossing for Redis, but not for the database.
    await sync_to_async(flush_budget_keys)()
    await asyncio.gather(*(call() for _ in range(50)))
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:  # Redis did report these crossings again...
        for scope in scopes:
            marked = client.smembers(keys.scope_keys(scope, day_key(timezone.now()))[7])
            assert marked >= {"80"}, scope
    finally:
        client.close()
    for scope, kind in scopes.items():  # ...and the database kept them to one each
        assert await alerts(scope) == [(80, kind), (100, kind)], scope
    assert await deliveries() == 8


async def test_an_alert_that_cannot_be_recorded_never_breaks_the_settle(make_user, monkeypatch):
    from budgets.services import alerts as alerts_module

    def broken(**kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(alerts_module, "alert_record", broken)
    user = await sync_to_async(make_user)(daily_tokens=1_000)
    state = await settle(await reserve(user.id), 900)
    assert state.tokens_used == 900
    assert await Alert.objects.acount() == 0


def test_the_admin_lists_the_alert_history_and_resends_failed_deliveries(client, make_user):
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    today = budget_day(timezone.now())
    sent = Alert.objects.create(
        kind="team", scope="team:1", day=today, threshold=80, subject="Team Research at 80%",
        message="m", email_status="sent", webhook_status="sent", webhook_attempts=1,
    )  # fmt: skip
    failed = Alert.objects.create(
        kind="provider", scope="provider:openai", day=today, threshold=100,
        subject="The OpenAI cap of $5.00 a day is reached", message="m", email_status="sent",
        webhook_status="failed", webhook_attempts=5, last_error="webhook attempt 5 of 5: boom",
    )  # fmt: skip
    url = reverse("admin:budgets_alert_changelist")

    page = client.get(url).content.decode()
    assert "Team Research at 80%" in page
    assert "The OpenAI cap of $5.00 a day is reached" in page
    only = client.get(url, {"webhook_status__exact": "failed"}).content.decode()
    assert "The OpenAI cap" in only
    assert "Team Research at 80%" not in only
    assert "OpenAI cap" in client.get(url, {"q": "openai"}).content.decode()
    assert client.get(reverse("admin:budgets_alert_change", args=[failed.pk])).status_code == 200
    assert client.get(reverse("admin:budgets_alert_add")).status_code == 403

    client.post(url, {"action": "resend", ACTION_CHECKBOX_NAME: [sent.pk, failed.pk]})
    failed.refresh_from_db()
    assert (failed.webhook_status, failed.webhook_attempts, failed.email_status) == (
        "pending",
        0,
        "sent",
    )
    [task] = DBTaskResult.objects.filter(queue_name="alerts")
    assert task.args_kwargs["args"] == [failed.pk, 0]  # the sent one is left alone


def test_alerts_a_crash_left_pending_are_enqueued_again_once_per_retry_schedule(settings):
    """No task finishes them: the enqueue after commit never happened, or a worker died
    between claiming webhook attempt 2 and posting it."""
    from budgets.tasks import alerts_redeliver_stuck, stuck_after_seconds

    settings.ALERTS_RETRY_SECONDS = 1.0
    settings.ALERTS_MAX_ATTEMPTS = 3  # schedule 1 + 2 s, +20% jitter, + 300 s: 303.6 s
    assert stuck_after_seconds() == pytest.approx(303.6)
    now = timezone.now()
    today = budget_day(now)

    def alert(threshold: int, age_s: float, **fields) -> Alert:
        return Alert.objects.create(
            kind="team", scope="team:9", day=today, threshold=threshold, subject="s", message="m",
            created_at=now - dt.timedelta(seconds=age_s), **fields,
        )  # fmt: skip

    never_enqueued = alert(80, 400)
    lost_attempt = alert(90, 400, email_status="sent", webhook_attempts=2)
    alert(95, 100)  # pending, but its retries may still be under way
    alert(99, 400, email_status="sent", webhook_status="sent")  # delivered
    alert(100, 400, email_status="pending", email_sent_at=now, webhook_status="skipped")

    assert alerts_redeliver_stuck(now=now) == 2
    enqueued = sorted(
        tuple(t.args_kwargs["args"]) for t in DBTaskResult.objects.filter(queue_name="alerts")
    )
    assert enqueued == [(never_enqueued.pk, 0), (lost_attempt.pk, 2)]
    assert alerts_redeliver_stuck(now=now) == 0  # not again within the schedule
