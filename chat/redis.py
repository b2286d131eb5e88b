"""The asyncio Redis client for this event loop (connections belong to the loop that made them)."""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aioredis
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_client() -> aioredis.Redis:
    """A client on settings.REDIS_URL, shared by everything running on this loop."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # Blocking reads (XREAD BLOCK) stay well under the socket timeout.
        client = _clients[loop] = aioredis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=2,
            socket_timeout=15,
            health_check_interval=30,
        )
    return client
