"""Start the embedded Redis (and a test secret) before Django reads its settings.

Loaded with `-p tests.redis_plugin` (pyproject.toml), so it runs around pytest-django's
own early set-up. When REDIS_URL is set, that server is used instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatsite.embedded_redis import EmbeddedRedis

_server: EmbeddedRedis | None = None


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _server
    os.environ.setdefault("SECRET_KEY", "insecure-test-key-" + "x" * 40)
    if not os.environ.get("REDIS_URL", "").strip():
        directory = Path(__file__).resolve().parent.parent / "var" / f"test-redis-{os.getpid()}"
        _server = EmbeddedRedis(directory, remove_on_stop=True).start()
        os.environ["REDIS_URL"] = _server.url
    return (yield)


def pytest_unconfigure(config):
    if _server is not None:
        _server.stop()
    # The file-based SQLite test database (see tests/conftest.py) and its WAL files.
    var = Path(__file__).resolve().parent.parent / "var"
    for path in var.glob(f"test-db-{os.getpid()}.sqlite3*"):
        path.unlink(missing_ok=True)
