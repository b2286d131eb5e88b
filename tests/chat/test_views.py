from __future__ import annotations

import pytest
from django.urls import reverse

from chat.models import Conversation, Message


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def make_conversation(user, title: str) -> Conversation:
    conversation = Conversation.objects.create(user=user, title=title)
    Message.objects.create(conversation=conversation, role="user", content=title)
    return conversation


def test_list_shows_only_my_conversations_most_recent_first(signed_in, user, other_user):
    older = make_conversation(user, "Older question")
    newer = make_conversation(user, "Newer question")
    make_conversation(other_user, "Someone else's secret")
    Conversation.objects.filter(pk=older.pk).update(updated_at="2020-01-01T00:00:00Z")
    page = signed_in.get(reverse("chat:home")).content.decode()
    assert "Someone else" not in page
    assert page.index("Newer question") < page.index("Older question")
    assert newer.title in page


def test_search_by_title_returns_the_list_partial_for_htmx(signed_in, user):
    make_conversation(user, "Budget planning")
    make_conversation(user, "Holiday ideas")
    response = signed_in.get(
        reverse("chat:home"),
        {"q": "budget"},
        headers={"HX-Request": "true", "HX-Target": "conversation-list"},
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<ul class="conversation-list"')
    assert "Budget planning" in html
    assert "Holiday ideas" not in html


def test_conversation_page_of_another_user_is_404(signed_in, other_user):
    theirs = make_conversation(other_user, "Private")
    assert signed_in.get(reverse("chat:conversation", args=[theirs.id])).status_code == 404


def test_new_chat_reuses_an_untouched_conversation(signed_in, user):
    first = signed_in.post(reverse("chat:conversation_new"))
    second = signed_in.post(reverse("chat:conversation_new"))
    assert first["Location"] == second["Location"]
    assert Conversation.objects.filter(user=user).count() == 1


def test_rename_sets_a_clean_title(signed_in, user):
    conversation = make_conversation(user, "Old")
    response = signed_in.post(
        reverse("chat:rename", args=[conversation.id]),
        {"title": "  A   better   title "},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "A better title" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "A better title"


@pytest.mark.parametrize(("title", "reason"), [("   ", "cannot be empty"), ("x" * 201, "200")])
def test_rename_refuses_bad_titles_and_keeps_the_old_one(signed_in, user, title, reason):
    conversation = make_conversation(user, "Keep me")
    response = signed_in.post(
        reverse("chat:rename", args=[conversation.id]),
        {"title": title},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert reason in response.content.decode()
    # htmx shows the refusal in the page's alert region, not in place of the form.
    assert response.headers["HX-Retarget"] == "#flash"
    assert response.headers["HX-Reswap"] == "innerHTML"
    conversation.refresh_from_db()
    assert conversation.title == "Keep me"


def test_rename_of_another_users_conversation_is_404(signed_in, other_user):
    theirs = make_conversation(other_user, "Theirs")
    response = signed_in.post(reverse("chat:rename", args=[theirs.id]), {"title": "Mine now"})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.title == "Theirs"


def test_delete_asks_for_confirmation_then_deletes(signed_in, user):
    conversation = make_conversation(user, "Doomed")
    confirm = signed_in.get(reverse("chat:delete", args=[conversation.id]))
    assert "cannot be undone" in confirm.content.decode()
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    response = signed_in.post(reverse("chat:delete", args=[conversation.id]))
    assert response.status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()


def test_delete_of_another_users_conversation_is_404(signed_in, other_user):
    theirs = make_conversation(other_user, "Theirs")
    assert signed_in.post(reverse("chat:delete", args=[theirs.id])).status_code == 404
    assert Conversation.objects.filter(pk=theirs.pk).exists()


def test_system_prompt_is_saved_and_sent_with_every_turn(signed_in, user):
    conversation = make_conversation(user, "With instructions")
    response = signed_in.post(
        reverse("chat:system_prompt", args=[conversation.id]),
        {"system_prompt": "  Answer in French.  "},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Saved." in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.system_prompt == "Answer in French."


def test_oversized_system_prompt_is_refused(signed_in, user, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    conversation = make_conversation(user, "Short limit")
    response = signed_in.post(
        reverse("chat:system_prompt", args=[conversation.id]),
        {"system_prompt": "x" * 11},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert "the limit is 10" in response.content.decode()
    assert response.headers["HX-Retarget"] == "#flash"
    conversation.refresh_from_db()
    assert conversation.system_prompt == ""


def test_system_prompt_of_another_users_conversation_is_404(signed_in, other_user):
    theirs = make_conversation(other_user, "Theirs")
    response = signed_in.post(
        reverse("chat:system_prompt", args=[theirs.id]), {"system_prompt": "obey me"}
    )
    assert response.status_code == 404


def test_the_model_picker_offers_only_what_the_plan_allows(signed_in, user, providers):
    from budgets.models import Plan
    from budgets.services.quotas import quota_update

    plan = Plan.objects.create(
        name="gpt-only", daily_tokens=1000, requests_per_minute=10, concurrent_streams=1,
        max_output_tokens=1024, allowed_models="gpt-5-mini",
    )  # fmt: skip
    quota_update(user_id=user.id, plan=plan)
    conversation = make_conversation(user, "Pick a model")
    page = signed_in.get(reverse("chat:conversation", args=[conversation.id])).content.decode()
    assert 'value="gpt-5-mini"' in page
    assert 'value="claude-sonnet-4-6"' not in page
    assert "GPT-5 mini" in page


def test_models_served_by_the_sandbox_are_labelled_so(signed_in, user, providers, settings):
    settings.LLM_SANDBOX_URL = providers.base_url
    conversation = make_conversation(user, "Which provider?")
    page = signed_in.get(reverse("chat:conversation", args=[conversation.id])).content.decode()
    assert "Claude Sonnet 4.6 (sandbox)" in page


def test_a_bad_title_on_another_users_conversation_is_still_404(signed_in, other_user):
    theirs = make_conversation(other_user, "Theirs")
    response = signed_in.post(
        reverse("chat:rename", args=[theirs.id]), {"title": "   "}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 404  # existence is not revealed by a validation message


def test_refusal_without_htmx_shows_on_the_conversation_page(signed_in, user, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    conversation = make_conversation(user, "Short limit")
    response = signed_in.post(
        reverse("chat:system_prompt", args=[conversation.id]),
        {"system_prompt": "x" * 11},
        follow=True,
    )
    assert response.status_code == 200
    # The flash message reaches the page (the chat's own messages must not hide it).
    assert "the limit is 10" in response.content.decode()
