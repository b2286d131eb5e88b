"""API keys: create, revoke, and authenticate a request (the hot path: one cached lookup).

A key is `sk-chat-` plus 43 URL-safe characters (256 random bits). Only its SHA-256 is
stored: the key is shown once, and finding it by its hash means no stored secret is ever
compared character by character. A positive lookup is cached in the process for
CHAT_API_KEY_CACHE_SECONDS, so a busy key costs no query per request; a revocation reaches
this process at once and every other within that time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from typing import Final

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from chat import errors
from chat.models import ApiKey

KEY_PREFIX: Final = "sk-chat-"
KEY_LENGTH: Final = len(KEY_PREFIX) + 43
SHOWN_CHARS: Final = 8  # of the random part, after KEY_PREFIX
TOUCH_EVERY: Final = dt.timedelta(minutes=1)  # last_used_at is written at most this often
CACHE_MAX_ENTRIES: Final = 10_000

# key hash -> (user id, monotonic expiry)
_cache: dict[str, tuple[int, float]] = {}


def key_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user_id: int, name: object) -> tuple[ApiKey, str]:
    """A new key for the user: the stored row and the key itself (shown only now)."""
    if not isinstance(name, str) or not name.strip():
        raise errors.InvalidInput("Give the key a name, to recognise it later.")
    name = " ".join(name.split())
    if len(name) > 100:
        raise errors.InvalidInput(f"A key's name can be 100 characters at most, not {len(name)}.")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user_id=user_id,
        name=name,
        prefix=raw[len(KEY_PREFIX) : len(KEY_PREFIX) + SHOWN_CHARS],
        key_hash=key_hash(raw),
    )
    return key, raw


def api_key_revoke(*, user_id: int | None, key_id: int) -> ApiKey:
    """Revoke a key of the user's (any user's when user_id is None: admins)."""
    keys = ApiKey.objects.all() if user_id is None else ApiKey.objects.filter(user_id=user_id)
    try:
        key = keys.get(pk=key_id)
    except (ApiKey.DoesNotExist, ValueError):
        raise errors.NotFound("That API key does not exist.") from None
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    _cache.pop(key.key_hash, None)
    return key


def _well_formed(raw: object) -> bool:
    return isinstance(raw, str) and len(raw) == KEY_LENGTH and raw.startswith(KEY_PREFIX)


def _cached(digest: str) -> int | None:
    hit = _cache.get(digest)
    if hit is None:
        return None
    user_id, expires = hit
    if time.monotonic() >= expires:
        _cache.pop(digest, None)
        return None
    return user_id


def api_key_authenticate(raw: object) -> int | None:
    """The id of the user a live key belongs to, or None (unknown, revoked, inactive user)."""
    if not _well_formed(raw):
        return None
    digest = key_hash(raw)  # type: ignore[arg-type]
    user_id = _cached(digest)
    if user_id is not None:
        return user_id
    row = (
        ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True, user__is_active=True)
        .values_list("pk", "key_hash", "user_id", "last_used_at")
        .first()
    )
    if row is None or not hmac.compare_digest(row[1], digest):
        return None
    pk, _, user_id, last_used_at = row
    now = timezone.now()
    if last_used_at is None or now - last_used_at >= TOUCH_EVERY:
        ApiKey.objects.filter(pk=pk).update(last_used_at=now)
    if len(_cache) >= CACHE_MAX_ENTRIES:
        _cache.clear()
    _cache[digest] = (user_id, time.monotonic() + settings.CHAT_API_KEY_CACHE_SECONDS)
    return user_id


async def aapi_key_authenticate(raw: object) -> int | None:
    """api_key_authenticate for async doors: a cache hit needs no thread or query."""
    if not _well_formed(raw):
        return None
    user_id = _cached(key_hash(raw))  # type: ignore[arg-type]
    if user_id is not None:
        return user_id
    return await sync_to_async(api_key_authenticate)(raw)


def bearer_key(header: str | bytes | None) -> str | None:
    """The key in an `Authorization: Bearer <key>` header, if there is one."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
