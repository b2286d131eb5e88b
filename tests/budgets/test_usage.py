"""The durable usage ledger."""

from __future__ import annotations

from decimal import Decimal

import pytest

from budgets.models import UsageRecord
from budgets.services import usage_record_create

pytestmark = pytest.mark.django_db(transaction=True)


def _record(uid: int, **overrides) -> dict:
    values = {
        "user_id": uid, "conversation_id": None, "message_id": 7, "model": "gpt-test",
        "provider": "openai", "input_tokens": 1000, "cache_write_tokens": 0,
        "cache_read_tokens": 200, "output_tokens": 300, "cost_micros": 4500,
        "time_to_first_token_ms": 250, "duration_ms": 2000, "retries": 1, "outcome": "finished",
        "cache_hit": False, "request_id": "ledger-1",
    }  # fmt: skip
    values.update(overrides)
    return values


async def test_a_retried_ledger_write_with_the_same_request_id_charges_once(user):
    await usage_record_create(**_record(user.id))
    await usage_record_create(**_record(user.id))
    assert await UsageRecord.objects.filter(request_id="ledger-1").acount() == 1
    record = await UsageRecord.objects.aget(request_id="ledger-1")
    assert record.total_tokens == 1500
    assert record.cost_usd == Decimal("0.0045")


@pytest.mark.parametrize(
    ("field", "value"),
    [("input_tokens", -1), ("cost_micros", 1.5), ("outcome", "exploded"), ("user_id", 0)],
)
async def test_bad_ledger_rows_are_refused(user, field, value):
    with pytest.raises(ValueError, match=field):
        await usage_record_create(**_record(user.id, **{field: value}))
    assert not await UsageRecord.objects.aexists()


async def test_a_call_whose_team_was_deleted_while_it_ran_is_kept_billed_to_no_team(user):
    from budgets.models import Team

    team = await Team.objects.acreate(name="Gone")
    await Team.objects.filter(pk=team.pk).adelete()
    await usage_record_create(**_record(user.id, team_id=team.id))
    record = await UsageRecord.objects.aget(request_id="ledger-1")
    assert record.team_id is None
    assert record.total_tokens == 1500
