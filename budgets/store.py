"""The Redis side of budgets: clients and the Lua scripts (one round trip each).

Async clients are bound to an event loop, so they are kept per loop (and per URL, which
tests change). Sync clients serve admin pages and management commands.
"""

from __future__ import annotations

import asyncio
import weakref
from functools import cache
from pathlib import Path

import redis
import redis.asyncio as aredis
from django.conf import settings

LUA_DIR = Path(__file__).resolve().parent / "lua"
SCRIPT_NAMES = ("reserve", "settle", "release", "seed", "unlock")
# Errors that mean "the budget store is unreachable" (refused, timed out, still loading).
# Other Redis errors (a script error) are bugs and propagate.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
)


@cache
def script_source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()


def _client_kwargs() -> dict[str, object]:
    timeout = settings.BUDGETS_REDIS_TIMEOUT
    return {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
    }


class AsyncStore:
    """An async client with its registered scripts."""

    def __init__(self, url: str) -> None:
        # A bounded pool: a burst of reservations queues for a connection (up to
        # BUDGETS_REDIS_POOL_WAIT) instead of opening one socket per concurrent request.
        # Waiting in that queue is load, not an unreachable Redis (socket_timeout is that).
        pool = aredis.BlockingConnectionPool.from_url(
            url,
            max_connections=settings.BUDGETS_REDIS_MAX_CONNECTIONS,
            timeout=settings.BUDGETS_REDIS_POOL_WAIT,
            **_client_kwargs(),
        )
        self.client = aredis.Redis(connection_pool=pool)
        self.scripts = {
            name: self.client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    async def run(self, name: str, keys: list[str], args: list[object]):
        return await self.scripts[name](keys=keys, args=args)

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.client.connection_pool.disconnect()


class SyncStore:
    """A sync client with its registered scripts (admin, commands, pages)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, **_client_kwargs())
        self.scripts = {
            name: self.client.register_script(script_source(name)) for name in SCRIPT_NAMES
        }

    def run(self, name: str, keys: list[str], args: list[object]):
        return self.scripts[name](keys=keys, args=args)


_async_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AsyncStore]] = (
    weakref.WeakKeyDictionary()
)
_sync_stores: dict[str, SyncStore] = {}


def async_store() -> AsyncStore:
    """The store for the running loop and the configured REDIS_URL."""
    loop = asyncio.get_running_loop()
    per_loop = _async_stores.setdefault(loop, {})
    url = settings.REDIS_URL
    if url not in per_loop:
        per_loop[url] = AsyncStore(url)
    return per_loop[url]


def sync_store() -> SyncStore:
    url = settings.REDIS_URL
    if url not in _sync_stores:
        _sync_stores[url] = SyncStore(url)
    return _sync_stores[url]


async def aclose_stores() -> None:
    """Close this loop's clients (tests and the bench call it before their loop ends)."""
    loop = asyncio.get_running_loop()
    for store in _async_stores.pop(loop, {}).values():
        await store.aclose()
