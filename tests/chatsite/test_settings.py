from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _import_settings(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    clean.update(env, VAR_DIR=str(tmp_path))
    code = "import chatsite.settings as s; print(s.SECRET_KEY)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def test_missing_secret_key_stops_startup_when_debug_is_off(tmp_path):
    result = _import_settings({"DEBUG": "false"}, tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_generates_a_secret_key_once_and_keeps_it(tmp_path):
    first = _import_settings({"DEBUG": "true"}, tmp_path)
    second = _import_settings({"DEBUG": "true"}, tmp_path)
    assert first.returncode == 0, first.stderr
    assert len(first.stdout.strip()) >= 50
    assert first.stdout == second.stdout
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.strip()


def test_explicit_secret_key_is_used(tmp_path):
    result = _import_settings({"DEBUG": "false", "SECRET_KEY": "k" * 60}, tmp_path)
    assert result.stdout.strip() == "k" * 60


def test_sqlite_runs_in_wal_mode_with_immediate_transactions(db):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
        return
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
    # The test database may be in memory, where WAL does not apply; the option is what matters.
    assert mode in {"wal", "memory"}
    assert settings.DATABASES["default"]["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in settings.DATABASES["default"]["OPTIONS"]["init_command"]


def test_redis_url_from_the_environment_reaches_cache_and_channel_layer():
    assert os.environ["REDIS_URL"] == settings.REDIS_URL
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"] == settings.REDIS_URL


def test_a_single_task_attempt_is_refused_at_startup(tmp_path):
    result = _import_settings({"DEBUG": "true", "TASKS_MAX_ATTEMPTS": "1"}, tmp_path)
    assert result.returncode != 0
    assert "TASKS_MAX_ATTEMPTS must be at least 2" in result.stderr


def test_an_alert_webhook_that_is_not_http_is_refused_at_startup(tmp_path):
    for url in ("ftp://hooks.example.com/x", "hooks.slack.com/services/T0", "https://"):
        result = _import_settings({"DEBUG": "true", "ALERTS_WEBHOOK_URL": url}, tmp_path)
        assert result.returncode != 0, url
        assert "ALERTS_WEBHOOK_URL must be an http:// or https:// URL" in result.stderr
    ok = _import_settings(
        {"DEBUG": "true", "ALERTS_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x"},
        tmp_path,
    )
    assert ok.returncode == 0, ok.stderr


def test_alert_thresholds_must_be_percentages(tmp_path):
    for value in ("80,abc", "0,100", "80,150", "-5"):
        result = _import_settings({"DEBUG": "true", "ALERTS_THRESHOLDS": value}, tmp_path)
        assert result.returncode != 0, value
        assert "ALERTS_THRESHOLDS must be percentages from 1 to 100" in result.stderr
    code = "import chatsite.settings as s; print(s.ALERTS_THRESHOLDS)"
    env = {**os.environ, "DEBUG": "true", "VAR_DIR": str(tmp_path), "ALERTS_THRESHOLDS": "90, 50"}
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True)
    assert shown.stdout.decode().strip() == "[50, 90]"
