"""The response cache: an identical deterministic request is answered from Redis.

Only requests with temperature 0 are cached (others are meant to vary). The key is a hash
of everything that shapes the answer: model, system prompt, messages, max_tokens,
temperature and stop sequences. Concurrent identical requests make one provider call: the
first takes a lock and the others wait for its answer (or go ahead themselves if it fails).
It talks to Redis with the asyncio client directly: Django's cache API would hop to a
thread per call.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import orjson
from django.conf import settings

from chat.providers.base import ChatRequest, Usage
from chat.redis import redis_client

LOCK_SECONDS = 120
POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    content: str
    stop_reason: str
    usage: Usage
    cost_micros: int


def cache_key(request: ChatRequest) -> str | None:
    """The request's cache key, or None when it must not be cached."""
    if not settings.CHAT_RESPONSE_CACHE or request.temperature != 0:
        return None
    shape = {
        "model": request.model,
        "system": request.system,
        "documents": list(request.documents),
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": list(request.stop),
    }
    return "chat:rc:" + hashlib.sha256(orjson.dumps(shape)).hexdigest()


async def lookup(key: str) -> CachedAnswer | None:
    """The stored answer for a key, if any."""
    raw = await redis_client().get(key)
    if raw is None:
        return None
    data = orjson.loads(raw)
    return CachedAnswer(data["content"], data["stop_reason"], Usage(**data["usage"]), data["cost"])


async def claim(key: str) -> bool:
    """Become the one caller that asks the provider for this key."""
    return bool(await redis_client().set(f"{key}:lock", 1, nx=True, ex=LOCK_SECONDS))


async def wait_for(key: str, *, timeout: float = LOCK_SECONDS) -> CachedAnswer | None:
    """Wait for the caller holding the lock to store its answer (None if it gave up)."""
    redis = redis_client()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        answer = await lookup(key)
        if answer is not None:
            return answer
        if not await redis.exists(f"{key}:lock"):
            return await lookup(key)
        await asyncio.sleep(POLL_SECONDS)
    return None


async def store(key: str, *, content: str, stop_reason: str, usage: Usage, cost: int) -> None:
    """Keep a complete answer for CHAT_RESPONSE_CACHE_SECONDS, and free the lock."""
    data = {
        "content": content,
        "stop_reason": stop_reason,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "output_tokens": usage.output_tokens,
        },
        "cost": cost,
    }
    async with redis_client().pipeline(transaction=True) as pipe:
        pipe.set(key, orjson.dumps(data), ex=settings.CHAT_RESPONSE_CACHE_SECONDS)
        pipe.delete(f"{key}:lock")
        await pipe.execute()


async def release(key: str) -> None:
    """Free the lock without an answer (the call failed): waiters go ahead themselves."""
    await redis_client().delete(f"{key}:lock")
