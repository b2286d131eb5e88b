from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse


def test_healthz_reports_database_and_redis_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is True


def test_healthz_is_503_when_redis_is_unreachable(client, db, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-here.sock"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_signup_creates_the_account_and_signs_in(client, db):
    response = client.post(
        reverse("signup"),
        {
            "username": "newton",
            "password1": "an apple fell 1666",
            "password2": "an apple fell 1666",
        },
    )
    assert response.status_code == 302
    assert get_user_model().objects.filter(username="newton").exists()
    home = client.get(reverse("chat:home"))
    assert home.status_code == 200
    assert b"newton" in home.content


def test_signup_refuses_mismatched_passwords_without_creating_anyone(client, db):
    response = client.post(
        reverse("signup"),
        {"username": "newton", "password1": "an apple fell 1666", "password2": "different"},
    )
    assert response.status_code == 200
    assert not get_user_model().objects.filter(username="newton").exists()


def test_signup_can_be_closed(client, db, settings):
    settings.SIGNUP_OPEN = False
    response = client.post(
        reverse("signup"),
        {
            "username": "newton",
            "password1": "an apple fell 1666",
            "password2": "an apple fell 1666",
        },
    )
    assert response.status_code == 403
    assert b"Sign-up is closed" in response.content
    assert not get_user_model().objects.filter(username="newton").exists()


@pytest.mark.parametrize("url", ["/", "/c/new/"])
def test_chat_pages_require_sign_in(client, db, url):
    response = client.get(url) if url == "/" else client.post(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_and_logout(client, user):
    response = client.post(
        reverse("login"), {"username": "ada", "password": "correct horse battery"}
    )
    assert response.status_code == 302
    assert client.get(reverse("chat:home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("chat:home")).status_code == 302


def test_admin_is_served(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200


def test_pages_carry_a_strict_content_security_policy(client, db):
    response = client.get(reverse("login"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "img-src 'self'" in policy
