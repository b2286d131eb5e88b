"""Shared fixtures: the provider sandbox, users, and a signed-in websocket."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sandbox.server import SandboxServer


@pytest.fixture(scope="session", autouse=True)
def collected_static(django_db_blocker):
    """Collect static files once, so pages are served as in production (whitenoise, manifest)."""
    from django.core.management import call_command

    call_command("collectstatic", "--no-input", verbosity=0)


@pytest.fixture(scope="session")
def sandbox_server():
    """One sandbox for the session, fast enough that tests do not wait on pacing."""
    with SandboxServer(tokens_per_second=4000.0, ttft_ms=0) as server:
        yield server


@pytest.fixture
def providers(settings, sandbox_server):
    """Point both SDKs at the sandbox through their base URLs, as `make run` does."""
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = sandbox_server.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = sandbox_server.base_url + "/v1"
    return sandbox_server


@pytest.fixture
def no_providers(settings):
    settings.ANTHROPIC_API_KEY = settings.ANTHROPIC_BASE_URL = ""
    settings.OPENAI_API_KEY = settings.OPENAI_BASE_URL = ""


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("ada", password="correct horse battery")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("grace", password="correct horse battery")


@pytest.fixture
def session_cookie(user) -> bytes:
    """A Cookie header for `user`, for websocket handshakes."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()
