"""Shared fixtures: the provider sandbox, users, and a signed-in websocket."""

from __future__ import annotations

import os

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sandbox.server import SandboxServer


@pytest.fixture(scope="session", autouse=True)
def collected_static(django_db_blocker):
    """Collect static files once, so pages are served as in production (whitenoise, manifest)."""
    from django.core.management import call_command

    call_command("collectstatic", "--no-input", verbosity=0)


@pytest.fixture(autouse=True)
def clean_redis_keys():
    """Budget counters, generations and cached answers of one test never leak into the next
    (user ids repeat once the database is flushed). Only the project's keys are touched."""
    import redis
    from django.conf import settings

    def flush() -> None:
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            for pattern in ("budgets:*", "chat:gen:*", "chat:conv:*", "chat:rc:*"):
                names = list(client.scan_iter(match=pattern, count=1000))
                if names:
                    client.delete(*names)
        finally:
            client.close()

    flush()
    yield
    flush()


@pytest.fixture(scope="session")
def sandbox_server():
    """One sandbox for the session, fast enough that tests do not wait on pacing."""
    with SandboxServer(tokens_per_second=4000.0, ttft_ms=0) as server:
        yield server


def point_providers_at(settings, server):
    """Both SDKs at a sandbox through their base URLs, as `make run` does; returns it."""
    settings.ANTHROPIC_API_KEY = "sk-ant-test"
    settings.ANTHROPIC_BASE_URL = server.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_BASE_URL = server.base_url + "/v1"
    return server


@pytest.fixture
def providers(settings, sandbox_server):
    """Point both SDKs at the sandbox through their base URLs, as `make run` does."""
    return point_providers_at(settings, sandbox_server)


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


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Keep the SQLite test database in a file, so a live Daphne process can share it."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        path = settings.VAR_DIR / f"test-db-{os.getpid()}.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(path)  # removed by tests.redis_plugin


def live_env(sandbox) -> dict[str, str]:
    """The environment of a live Daphne: the test database, Redis and the sandbox."""
    from django.conf import settings

    from tests.live import test_database_url

    return {
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "SECURE_COOKIES": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "ANTHROPIC_BASE_URL": sandbox.base_url,
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": sandbox.base_url + "/v1",
        "LLM_SANDBOX_URL": sandbox.base_url,
        # Retry waits long enough to see in a page, short enough for a test.
        "LLM_RETRY_BASE_DELAY": "0.5",
        "LLM_RETRY_JITTER": "0",
    }


@pytest.fixture(scope="session")
def live_server_process(django_db_setup, django_db_blocker, slow_sandbox):
    """A real Daphne process on a free port serving the app against the test database."""
    from tests.live import LiveServer

    with django_db_blocker.unblock():
        server = LiveServer(env=live_env(slow_sandbox)).start()
    yield server
    server.stop()


@pytest.fixture
def daphne_server(transactional_db, live_server_process):
    """The live server, with committed test data visible to it (flushed after each test)."""
    return live_server_process


@pytest.fixture(scope="session")
def slow_sandbox():
    """A sandbox paced like a real model, so a browser sees the answer grow."""
    with SandboxServer(tokens_per_second=60.0, ttft_ms=50) as server:
        yield server


@pytest.fixture
def task_worker(transactional_db, sandbox_server):
    """A real `manage.py run_worker` process running every queue against the test database.

    Use it with committed data (it implies `transactional_db`): enqueue a task (or call a
    service that does, on commit), then `task_worker.wait_for_result(result.id)` returns the
    finished DBTaskResult row (SUCCESSFUL or FAILED; the log is in the assertion on timeout).
    The worker runs with `live_env` (Redis, the sandbox as both providers, DEBUG off) and a 2 s
    heartbeat: settings overridden in the test process do not reach it. For other settings,
    several workers or a kill, build `tests.workers.TaskWorker(env=...)` yourself. Stopped
    (SIGTERM) after the test.
    """
    from tests.workers import TaskWorker

    worker = TaskWorker(env={**live_env(sandbox_server), "TASKS_WORKER_HEARTBEAT_SECONDS": "2"})
    worker.start()
    yield worker
    worker.stop()
