"""Billing a team from chat: choosing the team, the pipeline reserving and recording against it,
refusals naming the team, leaving a team mid-conversation, batches and the pages."""

from __future__ import annotations

import uuid

import httpx2 as httpx
import pytest
from asgiref.sync import sync_to_async
from django.contrib.messages import get_messages

from budgets.models import Team, TeamMembership, UsageRecord
from budgets.scopes import member_scope, team_scope
from budgets.services import budget_state, scope_usage
from budgets.services.teams import membership_delete
from chat import errors
from chat.models import BatchItem, BatchJob, Conversation, Message
from chat.services import conversations
from chat.services.batch_accounting import request_id_of
from chat.services.batch_runs import batch_job_step
from chat.services.batches import batch_job_create
from chat.services.turns import Finished, run_turn
from tests.documents import make_document

pytestmark = pytest.mark.django_db(transaction=True)
GPT = "gpt-5-mini"


def questions_seen(sandbox) -> list[str]:
    traces = httpx.get(sandbox.base_url + "/sandbox/trace", timeout=5).json()["traces"]
    return [trace["question"] for trace in traces]


def make_team(name: str, *members, daily_tokens: int = 10**6) -> Team:
    team = Team.objects.create(name=name, daily_tokens=daily_tokens)
    for member in members:
        TeamMembership.objects.create(team=team, user=member)
    return team


ateam = sync_to_async(make_team)


async def collect(**kwargs):
    return [event async for event in run_turn(**kwargs)]


# Choosing the team -----------------------------------------------------------------------


def test_a_new_conversation_bills_the_first_team_joined_or_personal_without_one(user, other_user):
    first = make_team("Research", user)
    make_team("Ops", user)
    assert conversations.conversation_start(user_id=user.id).billing_team_id == first.id
    assert conversations.conversation_start(user_id=other_user.id).billing_team_id is None


def test_choosing_a_team_by_id_or_name_then_personal(user):
    research = make_team("Research", user)
    ops = make_team("Ops", user)
    conversation = Conversation.objects.create(user=user, billing_team=research)
    chosen = conversations.conversation_set_billing_team(
        user_id=user.id, conversation_id=conversation.id, team=str(ops.id)
    )
    assert chosen.billing_team_id == ops.id
    conversations.conversation_set_billing_team(
        user_id=user.id, conversation_id=conversation.id, team="Research"
    )
    conversation.refresh_from_db()
    assert conversation.billing_team_id == research.id
    conversations.conversation_set_billing_team(
        user_id=user.id, conversation_id=conversation.id, team=None
    )
    conversation.refresh_from_db()
    assert conversation.billing_team_id is None


def test_a_team_you_are_not_in_is_refused_naming_it_and_nothing_changes(user, other_user):
    mine = make_team("Research", user)
    theirs = make_team("Finance", other_user)
    conversation = Conversation.objects.create(user=user, billing_team=mine)
    for team, named in (
        (theirs.id, f"#{theirs.id}"),
        ("Finance", "“Finance”"),
        (999_999, "#999999"),
    ):
        with pytest.raises(errors.InvalidInput) as refused:
            conversations.conversation_set_billing_team(
                user_id=user.id, conversation_id=conversation.id, team=team
            )
        assert refused.value.code == "not_a_member"
        assert refused.value.message == (
            f"You're not a member of team {named}, so it can't be billed. "
            "Choose one of your teams (Research) or your personal budget."
        )
    conversation.refresh_from_db()
    assert conversation.billing_team_id == mine.id


def test_a_team_of_the_wrong_type_is_refused_as_invalid(user):
    make_team("Research", user)
    conversation = Conversation.objects.create(user=user)
    for value in (True, 1.5, ["Research"], {"id": 1}):
        with pytest.raises(errors.InvalidInput) as refused:
            conversations.conversation_set_billing_team(
                user_id=user.id, conversation_id=conversation.id, team=value
            )
        assert refused.value.code == "invalid_request"
        assert refused.value.extra["param"] == "team"


# The pipeline ----------------------------------------------------------------------------


async def test_a_turn_billed_to_a_team_is_recorded_and_counted_against_it(traced, user):
    team = await ateam("Research", user)
    conversation = await Conversation.objects.acreate(user=user, billing_team=team)
    events = await collect(
        user_id=user.id, conversation_id=conversation.id, text="Bill the team", model=GPT
    )
    finished = events[-1]
    assert isinstance(finished, Finished)
    record = await UsageRecord.objects.aget(user=user)
    assert record.team_id == team.id
    used = finished.usage.total_tokens
    team_usage = await scope_usage(scope=team_scope(team.id))
    assert (team_usage.tokens_used, team_usage.reserved_tokens) == (used, 0)
    assert team_usage.cost_used_micros == finished.cost_micros
    member = await scope_usage(scope=member_scope(team.id, user.id))
    assert member.tokens_used == used
    assert (await budget_state(user_id=user.id)).tokens_used == used


async def test_a_personal_turn_records_no_team_and_leaves_the_team_untouched(traced, user):
    team = await ateam("Research", user)
    conversation = await Conversation.objects.acreate(user=user, billing_team=None)
    await collect(user_id=user.id, conversation_id=conversation.id, text="Mine", model=GPT)
    record = await UsageRecord.objects.aget(user=user)
    assert record.team_id is None
    assert (await scope_usage(scope=team_scope(team.id))).tokens_used == 0


async def test_a_spent_team_budget_refuses_naming_the_team_and_sends_nothing(traced, user):
    team = await ateam("Research", user, daily_tokens=5)
    conversation = await Conversation.objects.acreate(user=user, billing_team=team)
    question = f"never sent {uuid.uuid4().hex}"
    with pytest.raises(errors.Refused) as refused:
        await collect(user_id=user.id, conversation_id=conversation.id, text=question, model=GPT)
    assert refused.value.code == "budget_exceeded"
    assert refused.value.message.startswith("Team Research's daily budget (5 tokens)")
    assert refused.value.extra["scope"] == f"team:{team.id}"
    assert refused.value.extra["resets_at"] is not None
    assert not [q for q in questions_seen(traced) if question in q]
    assert await Message.objects.filter(conversation=conversation).acount() == 0
    assert await UsageRecord.objects.filter(user=user).acount() == 0
    for scope in (team_scope(team.id), member_scope(team.id, user.id)):
        assert (await scope_usage(scope=scope)).reserved_tokens == 0
    assert (await budget_state(user_id=user.id)).reserved_tokens == 0
    # Billing the personal budget instead goes on at once.
    await sync_to_async(conversations.conversation_set_billing_team)(
        user_id=user.id, conversation_id=conversation.id, team=None
    )
    events = await collect(user_id=user.id, conversation_id=conversation.id, text="Go", model=GPT)
    assert isinstance(events[-1], Finished)


async def test_leaving_the_team_mid_conversation_refuses_with_not_a_member(
    traced, user, other_user
):
    team = await ateam("Research", user, other_user)  # a team keeps at least one member
    conversation = await Conversation.objects.acreate(user=user, billing_team=team)
    first = await collect(user_id=user.id, conversation_id=conversation.id, text="One", model=GPT)
    assert isinstance(first[-1], Finished)
    membership = await TeamMembership.objects.aget(team=team, user=user)
    await sync_to_async(membership_delete)(membership=membership)
    with pytest.raises(errors.Refused) as refused:
        await collect(user_id=user.id, conversation_id=conversation.id, text="Two", model=GPT)
    assert refused.value.code == "not_a_member"
    assert "You're not a member of team Research" in refused.value.message
    assert await Message.objects.filter(conversation=conversation).acount() == 2
    assert (await scope_usage(scope=team_scope(team.id))).reserved_tokens == 0


# Batches ---------------------------------------------------------------------------------


async def test_a_batch_bills_the_team_chosen_for_it_item_by_item(traced, user, other_user):
    team = await ateam("Research", user)
    await ateam("Finance", other_user)
    docs = [await sync_to_async(make_document)(user, f"n{i}.txt", f"Note {i}.") for i in range(2)]
    create = sync_to_async(batch_job_create)
    with pytest.raises(errors.InvalidInput) as refused:
        await create(
            user_id=user.id,
            model=GPT,
            document_ids=[d.id for d in docs],
            instruction="Summarise.",
            team="Finance",
        )
    assert refused.value.code == "not_a_member"
    job = await create(
        user_id=user.id, model=GPT, document_ids=[d.id for d in docs], instruction="Summarise."
    )
    assert job.billing_team_id == team.id  # the first team, by default
    while await batch_job_step(job_id=str(job.id)) is not None:
        pass
    items = [item async for item in BatchItem.objects.filter(job=job)]
    assert {item.status for item in items} == {"succeeded"}
    records = [await UsageRecord.objects.aget(request_id=request_id_of(i)) for i in items]
    assert {record.team_id for record in records} == {team.id}
    team_usage = await scope_usage(scope=team_scope(team.id))
    assert team_usage.tokens_used == sum(r.total_tokens for r in records) > 0
    assert team_usage.reserved_tokens == 0


def test_the_batch_form_offers_the_teams_and_stores_the_choice(client, user, settings):
    settings.OPENAI_API_KEY = "sk-test"
    research = make_team("Research", user)
    make_team("Ops", user)
    doc = make_document(user, "n.txt", "Note.")
    client.force_login(user)
    page = client.get("/batches/").content.decode()
    assert '<select name="team" id="batch-team">' in page
    assert f'<option value="{research.id}" selected>Team Research</option>' in page
    response = client.post(
        "/batches/",
        {"documents": [str(doc.id)], "model": GPT, "instruction": "Go.", "team": ""},
    )
    assert response.status_code == 302
    assert BatchJob.objects.get(user=user).billing_team_id is None  # "Personal budget" chosen


# The pages -------------------------------------------------------------------------------


def test_the_composer_shows_bill_to_with_the_current_team_and_its_meter(client, user):
    research = make_team("Research", user, daily_tokens=50_000)
    make_team("Ops", user)
    conversation = Conversation.objects.create(user=user, billing_team=research)
    client.force_login(user)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert '<option value="">Personal budget</option>' in page
    assert f'<option value="{research.id}" selected>Team Research</option>' in page
    assert "Team Ops</option>" in page
    assert "Team Research: 0 of 50,000 tokens today" in page


def test_the_composer_hides_bill_to_for_someone_in_no_team(client, user):
    conversation = Conversation.objects.create(user=user)
    client.force_login(user)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert 'id="billing-team"' in page
    assert 'hx-swap="outerHTML" hidden>' in page
    assert 'id="team-meter-value"' not in page


def test_changing_bill_to_with_htmx_returns_the_select(client, user):
    research = make_team("Research", user)
    conversation = Conversation.objects.create(user=user)
    client.force_login(user)
    response = client.post(
        f"/c/{conversation.id}/billing/", {"team": str(research.id)}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<option value="{research.id}" selected>Team Research</option>' in html
    assert "Now billing team Research." in html
    conversation.refresh_from_db()
    assert conversation.billing_team_id == research.id


def test_a_refused_choice_lands_in_the_flash_region_and_changes_nothing(client, user, other_user):
    mine = make_team("Research", user)
    theirs = make_team("Finance", other_user)
    conversation = Conversation.objects.create(user=user, billing_team=mine)
    client.force_login(user)
    response = client.post(
        f"/c/{conversation.id}/billing/", {"team": str(theirs.id)}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422
    assert response["HX-Retarget"] == "#flash"
    body = response.content.decode()
    assert "You&#x27;re not a member of team #" in body
    # the select comes back out of band, showing the choice that still holds
    assert 'id="billing-team"' in body
    assert 'hx-swap-oob="true"' in body
    assert f'<option value="{mine.id}" selected>Team Research</option>' in body
    conversation.refresh_from_db()
    assert conversation.billing_team_id == mine.id


def test_without_javascript_the_choice_redirects_back_with_a_message(client, user, other_user):
    research = make_team("Research", user)
    theirs = make_team("Finance", other_user)
    conversation = Conversation.objects.create(user=user)
    client.force_login(user)
    response = client.post(f"/c/{conversation.id}/billing/", {"team": str(research.id)})
    assert response.status_code == 302
    assert response["Location"] == f"/c/{conversation.id}/"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "This conversation now bills team Research."
    ]
    refused = client.post(f"/c/{conversation.id}/billing/", {"team": str(theirs.id)}, follow=True)
    assert "You&#x27;re not a member of team #" in refused.content.decode()
    conversation.refresh_from_db()
    assert conversation.billing_team_id == research.id


def test_another_users_conversation_is_not_found(client, user, other_user):
    conversation = Conversation.objects.create(user=other_user)
    client.force_login(user)
    assert client.post(f"/c/{conversation.id}/billing/", {"team": ""}).status_code == 404


def test_a_conversation_billed_to_a_team_left_shows_it_and_offers_the_others(
    client, user, other_user
):
    research = make_team("Research", user, other_user)
    make_team("Ops", user)
    conversation = Conversation.objects.create(user=user, billing_team=research)
    membership_delete(membership=TeamMembership.objects.get(team=research, user=user))
    client.force_login(user)
    page = client.get(f"/c/{conversation.id}/").content.decode()
    assert "selected disabled>Team Research (you're no longer a member)</option>" in page
    assert "Team Ops</option>" in page


def test_the_usage_page_shows_which_budget_each_call_billed(client, user):
    research = make_team("Research", user)
    for team in (research, None):
        UsageRecord.objects.create(
            user=user,
            team=team,
            model=GPT,
            provider="openai",
            input_tokens=10,
            output_tokens=5,
            cost_micros=30,
            outcome="finished",
            request_id=uuid.uuid4().hex,
        )
    client.force_login(user)
    page = client.get("/usage/").content.decode()
    assert page.count("<td>Team Research</td>") == 1
    assert page.count("<td>Personal</td>") == 1


async def test_the_api_door_reads_a_persons_teams_once_per_cache_period(user, other_user, settings):
    """The first byte waits for no query: the teams are cached in the process briefly."""
    from chat.services import billing

    settings.CHAT_API_KEY_CACHE_SECONDS = 60
    first = await ateam("Cached", user)
    assert await billing.abilling_team_for_new(user_id=user.id) == first.id
    await TeamMembership.objects.filter(user=user).adelete()
    # still the cached default: the reserve script is what checks membership on every call
    assert await billing.abilling_team_for_new(user_id=user.id) == first.id
    assert await billing.abilling_team_for_new(user_id=user.id, team=None) is None
    # a team not in the cached list is looked up afresh: joined a moment ago, or not at all
    joined = await ateam("Joined", user)
    assert await billing.abilling_team_for_new(user_id=user.id, team="Joined") == joined.id
    stranger = await ateam("Stranger", other_user)
    with pytest.raises(errors.InvalidInput) as refused:
        await billing.abilling_team_for_new(user_id=user.id, team=stranger.id)
    assert refused.value.code == "not_a_member"
