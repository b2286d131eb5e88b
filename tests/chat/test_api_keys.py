"""API keys: only a hash stored, shown once, revocable by the user, admins and at once."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from chat import errors
from chat.models import ApiKey
from chat.services import api_keys
from chat.services.api_keys import api_key_authenticate, api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def test_created_key_is_shown_once_and_only_its_hash_is_stored(user):
    key, raw = api_key_create(user_id=user.id, name="  laptop  script ")
    assert raw.startswith("sk-chat-")
    assert len(raw) == 51
    assert key.name == "laptop script"
    assert key.prefix == raw[8:16]
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = ApiKey.objects.filter(pk=key.pk).values()[0]
    assert raw not in {str(value) for value in stored.values()}


def test_key_authenticates_its_user_and_records_last_use(user):
    key, raw = api_key_create(user_id=user.id, name="k")
    assert api_key_authenticate(raw) == user.id
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_last_use_is_written_at_most_once_a_minute(user, django_assert_num_queries):
    key, raw = api_key_create(user_id=user.id, name="k")
    recent = timezone.now() - dt.timedelta(seconds=10)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=recent)
    with django_assert_num_queries(1):  # the lookup, no update
        assert api_key_authenticate(raw) == user.id
    key.refresh_from_db()
    assert key.last_used_at == recent


def test_a_cached_key_needs_no_query(user, django_assert_num_queries):
    _, raw = api_key_create(user_id=user.id, name="k")
    api_key_authenticate(raw)
    with django_assert_num_queries(0):
        assert api_key_authenticate(raw) == user.id


@pytest.mark.parametrize(
    "raw", [None, "", "sk-chat-short", "sk-other-" + "a" * 43, "sk-chat-" + "a" * 43]
)
def test_malformed_or_unknown_keys_are_refused(user, raw):
    api_key_create(user_id=user.id, name="k")
    assert api_key_authenticate(raw) is None


def test_revoked_key_is_refused_at_once_even_when_cached(user):
    key, raw = api_key_create(user_id=user.id, name="k")
    assert api_key_authenticate(raw) == user.id
    api_key_revoke(user_id=user.id, key_id=key.pk)
    assert api_key_authenticate(raw) is None
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_keys_of_inactive_users_are_refused(user):
    _, raw = api_key_create(user_id=user.id, name="k")
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert api_key_authenticate(raw) is None


def test_a_user_cannot_revoke_another_users_key(user, other_user):
    key, raw = api_key_create(user_id=user.id, name="k")
    with pytest.raises(errors.NotFound):
        api_key_revoke(user_id=other_user.id, key_id=key.pk)
    assert api_key_authenticate(raw) == user.id


def test_a_key_needs_a_name(user):
    with pytest.raises(errors.InvalidInput):
        api_key_create(user_id=user.id, name="   ")


def test_bearer_header_parsing():
    assert api_keys.bearer_key(b"Bearer sk-chat-x") == "sk-chat-x"
    assert api_keys.bearer_key("bearer  sk-chat-x ") == "sk-chat-x"
    assert api_keys.bearer_key("Basic abc") is None
    assert api_keys.bearer_key(None) is None


def test_settings_page_creates_shows_once_lists_and_revokes(client, user):
    client.force_login(user)
    url = reverse("chat:api_keys")
    page = client.post(url, {"name": "my script"})
    assert page.status_code == 200
    raw = page.context["created"]["raw"]
    assert raw in page.content.decode()
    listing = client.get(url).content.decode()
    assert "my script" in listing
    assert raw not in listing
    assert raw[:16] + "…" in listing
    key = ApiKey.objects.get(user=user)
    revoked = client.post(reverse("chat:api_key_revoke", args=[key.pk]), follow=True)
    assert "Revoked" in revoked.content.decode()
    assert api_key_authenticate(raw) is None


def test_settings_page_needs_sign_in_and_revoke_needs_post(client, user):
    assert client.get(reverse("chat:api_keys")).status_code == 302
    key, _ = api_key_create(user_id=user.id, name="k")
    client.force_login(user)
    assert client.get(reverse("chat:api_key_revoke", args=[key.pk])).status_code == 405


def test_another_users_key_cannot_be_revoked_from_the_page(client, user, other_user):
    key, raw = api_key_create(user_id=other_user.id, name="theirs")
    client.force_login(user)
    assert client.post(reverse("chat:api_key_revoke", args=[key.pk])).status_code == 404
    assert api_key_authenticate(raw) == other_user.id


def test_admin_lists_and_revokes_keys(admin_client, user):
    key, raw = api_key_create(user_id=user.id, name="k")
    changelist = reverse("admin:chat_apikey_changelist")
    assert "sk-chat-" + key.prefix in admin_client.get(changelist).content.decode()
    admin_client.post(changelist, {"action": "revoke", "_selected_action": [key.pk]})
    assert api_key_authenticate(raw) is None


def test_create_api_key_command_prints_the_key_last(user):
    out = io.StringIO()
    call_command("create_api_key", "ada", "--name", "ci", stdout=out)
    raw = out.getvalue().strip().splitlines()[-1]
    assert api_key_authenticate(raw) == user.id
    assert ApiKey.objects.get(user=user).name == "ci"
