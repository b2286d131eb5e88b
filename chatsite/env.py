"""Reading settings from the environment: each helper refuses a bad value with a message
that names the variable, so start-up stops early instead of running misconfigured."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured


def env_str(name: str, default: str = "") -> str:
    """A text variable, stripped; blank or unset gives the default."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, default: bool = False) -> bool:
    """Read a boolean variable: 1/true/yes/on (any case) is true."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    """Read a comma-separated variable into a list without blanks."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}.") from None


def env_percentages(name: str, default: str) -> list[int]:
    """A comma-separated list of whole percentages from 1 to 100, sorted, without repeats."""
    items = env_list(name, default)
    values = sorted({int(x) for x in items if x.isdigit()})
    if not values or len(values) < len(set(items)) or not all(1 <= v <= 100 for v in values):
        raise ImproperlyConfigured(f"{name} must be percentages from 1 to 100, e.g. 80,100.")
    return values


def env_http_url(name: str) -> str:
    """An http:// or https:// URL with a host, or empty (unset)."""
    url = env_str(name)
    if url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL, not {url!r}.")
    return url


def env_secret_key(*, debug: bool, var_dir: Path) -> str:
    """SECRET_KEY; required with DEBUG off, else generated once under var/ and kept."""
    key = os.environ.get("SECRET_KEY", "").strip()
    if key:
        return key
    if not debug:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random string "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=true for local development."
        )
    # In development, generate one once and keep it so sessions survive restarts.
    path = var_dir / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()
