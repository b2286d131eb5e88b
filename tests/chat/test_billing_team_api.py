"""Billing a team from the APIs for programs: the official openai SDK (`extra_body={"team": ...}`)
and the JSON websocket API's `team` field, against a live Daphne, the sandbox and real Redis."""

from __future__ import annotations

import json

import openai
import pytest
from asgiref.sync import sync_to_async
from websockets.asyncio.client import connect

from budgets.models import Team, TeamMembership, UsageRecord
from budgets.scopes import team_scope
from budgets.services import scope_usage_sync
from chat.models import Conversation
from chat.services.api_keys import api_key_create

MODEL = "gpt-5-mini"


@pytest.fixture
def api_key(daphne_server, user) -> str:
    return api_key_create(user_id=user.id, name="tests")[1]


@pytest.fixture
def client(daphne_server, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=daphne_server.url + "/v1", api_key=api_key, max_retries=0)


def make_team(name: str, *members, daily_tokens: int = 10**6) -> Team:
    team = Team.objects.create(name=name, daily_tokens=daily_tokens)
    for member in members:
        TeamMembership.objects.create(team=team, user=member)
    return team


def ask(client: openai.OpenAI, text: str = "sandbox-reply:4 hi", **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": text}], **kwargs
    )


# The OpenAI-compatible door ----------------------------------------------------------------


def test_a_request_bills_the_key_owners_first_team_unless_it_says_otherwise(client, user):
    research = make_team("Research", user)
    ops = make_team("Ops", user)
    ask(client, "sandbox-reply:4 default")
    ask(client, "sandbox-reply:4 by name", extra_body={"team": "Ops"})
    ask(client, "sandbox-reply:4 by id", extra_body={"team": research.id})
    ask(client, "sandbox-reply:4 personal", extra_body={"team": None})
    billed = {
        c.title: (c.billing_team_id, UsageRecord.objects.get(conversation_id=c.id).team_id)
        for c in Conversation.objects.filter(user=user)
    }
    assert billed == {
        "sandbox-reply:4 default": (research.id, research.id),
        "sandbox-reply:4 by name": (ops.id, ops.id),
        "sandbox-reply:4 by id": (research.id, research.id),
        "sandbox-reply:4 personal": (None, None),
    }
    used = sum(r.total_tokens for r in UsageRecord.objects.filter(team=research))
    assert scope_usage_sync(scope=team_scope(research.id)).tokens_used == used > 0


def test_a_team_you_are_not_in_is_a_403_naming_it_and_stores_nothing(client, user, other_user):
    make_team("Research", user)
    finance = make_team("Finance", other_user)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        ask(client, extra_body={"team": finance.id})
    assert refused.value.status_code == 403
    error = refused.value.body
    assert error["code"] == "not_a_member"
    assert error["type"] == "permission_error"
    assert error["param"] == "team"
    assert error["message"] == (
        f"You're not a member of team #{finance.id}, so it can't be billed. "
        "Choose one of your teams (Research) or your personal budget."
    )
    assert not Conversation.objects.filter(user=user).exists()
    assert not UsageRecord.objects.exists()


def test_a_team_of_the_wrong_type_is_a_400_naming_the_field(client, user):
    make_team("Research", user)
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, extra_body={"team": ["Research"]})
    assert refused.value.body["param"] == "team"
    assert refused.value.body["code"] == "invalid_request"
    assert "`team` must be a team id" in refused.value.body["message"]
    assert not Conversation.objects.filter(user=user).exists()


def test_a_spent_team_budget_is_a_429_naming_the_team_and_stores_nothing(client, user):
    make_team("Research", user, daily_tokens=5)
    with pytest.raises(openai.RateLimitError) as refused:
        ask(client, stream=True)
    assert refused.value.body["code"] == "budget_exceeded"
    assert refused.value.body["message"].startswith("Team Research's daily budget (5 tokens)")
    assert int(refused.value.response.headers["retry-after"]) >= 1
    assert not Conversation.objects.filter(user=user).exists()
    # The personal budget still answers.
    assert ask(client, extra_body={"team": None}).choices[0].finish_reason == "stop"


# The JSON websocket API ---------------------------------------------------------------------


def opened(daphne_server, key: str):
    url = daphne_server.url.replace("http://", "ws://") + "/ws/v1/chat/"
    return connect(url, additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10)


async def until(ws, *types: str) -> list[dict]:
    frames = []
    while True:
        frames.append(json.loads(await ws.recv()))
        if frames[-1]["type"] in types:
            return frames


def send(message: str, **fields) -> str:
    return json.dumps({"type": "send", "message": message, "model": MODEL, **fields})


async def test_the_websocket_api_bills_the_team_asked_for_and_keeps_it(
    daphne_server, api_key, user, other_user
):
    research = await sync_to_async(make_team)("Research", user)
    ops = await sync_to_async(make_team)("Ops", user)
    finance = await sync_to_async(make_team)("Finance", other_user)
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:3 first"))
        first = await until(ws, "finished", "error")
        conversation_id = first[0]["conversation_id"]
        await ws.send(send("sandbox-reply:3 to ops", conversation_id=conversation_id, team="Ops"))
        second = await until(ws, "finished", "error")
        await ws.send(send("sandbox-reply:3 again", conversation_id=conversation_id))
        third = await until(ws, "finished", "error")
        await ws.send(send("no", conversation_id=conversation_id, team=finance.id))
        (refused,) = await until(ws, "finished", "error")
    assert [frames[-1]["type"] for frames in (first, second, third)] == ["finished"] * 3
    teams = [
        (await UsageRecord.objects.aget(message_id=frames[0]["message_id"])).team_id
        for frames in (first, second, third)
    ]
    assert teams == [research.id, ops.id, ops.id]
    assert refused["code"] == "not_a_member"
    assert refused["message"].startswith(f"You're not a member of team #{finance.id}")
    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert conversation.billing_team_id == ops.id  # the refused choice changed nothing


async def test_the_websocket_api_bills_nobody_else_when_team_is_null(daphne_server, api_key, user):
    await sync_to_async(make_team)("Research", user)
    async with opened(daphne_server, api_key) as ws:
        await ws.send(send("sandbox-reply:3 mine", team=None))
        frames = await until(ws, "finished", "error")
    assert frames[-1]["type"] == "finished"
    record = await UsageRecord.objects.aget(message_id=frames[0]["message_id"])
    assert record.team_id is None
    conversation = await Conversation.objects.aget(pk=frames[0]["conversation_id"])
    assert conversation.billing_team_id is None
