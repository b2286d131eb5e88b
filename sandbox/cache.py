"""Simulated prompt caches, in memory: Anthropic's breakpoints and OpenAI's automatic prefixes.

Anthropic: each cache breakpoint names a prefix (tools, system, messages, up to and including the
marked block). A request reads the longest prefix already cached, looking back up to 20 blocks
from each breakpoint as the real API does, and writes every cacheable breakpoint beyond it.
Entries live 5 minutes (or 1 hour) from their last use. OpenAI: prompts of 1024 tokens or more
are cached automatically in 128-token steps; a later prompt with the same prefix reads it.
Both caches are per API key and per model.
"""

from __future__ import annotations

import hashlib
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Ttl = Literal["5m", "1h"]
TTL_SECONDS: dict[Ttl, float] = {"5m": 300.0, "1h": 3600.0}
LOOKBACK_BLOCKS = 20
OPENAI_MIN_PREFIX = 1024
OPENAI_STEP = 128
OPENAI_TTL_SECONDS = 600.0
_SWEEP_EVERY_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Segment:
    """One block of an Anthropic prompt: its tokens, the hash of the prefix ending here, its TTL."""

    tokens: int
    digest: str
    breakpoint: Ttl | None = None


@dataclass(frozen=True, slots=True)
class CacheUsage:
    """Prompt tokens read from and written to the cache by one request."""

    read: int = 0
    write_5m: int = 0
    write_1h: int = 0

    @property
    def written(self) -> int:
        """Total cache-write tokens."""
        return self.write_5m + self.write_1h


class _ExpiringSet:
    """Keys with an expiry time, swept now and then so memory stays bounded."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expires: dict[tuple[str, ...], tuple[float, float]] = {}
        self._last_sweep = clock()
        self.lock = threading.Lock()

    def hit(self, key: tuple[str, ...]) -> bool:
        """Return True when key is present and unexpired, refreshing its lifetime."""
        entry = self._expires.get(key)
        now = self._clock()
        if entry is None or entry[0] <= now:
            return False
        self._expires[key] = (now + entry[1], entry[1])
        return True

    def put(self, key: tuple[str, ...], ttl: float) -> None:
        """Store key for ttl seconds (keeping a longer lifetime it already has)."""
        now = self._clock()
        old = self._expires.get(key)
        if old is None or old[0] < now + ttl:
            self._expires[key] = (now + ttl, ttl)
        if now - self._last_sweep > _SWEEP_EVERY_SECONDS:
            self._last_sweep = now
            self._expires = {k: v for k, v in self._expires.items() if v[0] > now}


class AnthropicPromptCache:
    """Anthropic's explicit prompt cache."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries = _ExpiringSet(clock)

    def apply(
        self, *, api_key: str, model: str, segments: Sequence[Segment], min_cacheable: int
    ) -> CacheUsage:
        """Read the longest cached prefix, write the cacheable breakpoints beyond it."""
        breakpoints = [i for i, s in enumerate(segments) if s.breakpoint]
        if not breakpoints:
            return CacheUsage()
        totals: list[int] = []
        running = 0
        for segment in segments:
            running += segment.tokens
            totals.append(running)
        candidates = sorted(
            {i for bp in breakpoints for i in range(max(0, bp - LOOKBACK_BLOCKS + 1), bp + 1)},
            reverse=True,
        )
        with self._entries.lock:
            hit = next(
                (i for i in candidates if self._entries.hit((api_key, model, segments[i].digest))),
                -1,
            )
            read = totals[hit] if hit >= 0 else 0
            written: dict[Ttl, int] = {"5m": 0, "1h": 0}
            previous = read
            for bp in breakpoints:
                if bp <= hit or totals[bp] < min_cacheable:
                    continue
                ttl = segments[bp].breakpoint or "5m"
                # Tokens between the previous cached point and this breakpoint take its TTL.
                written[ttl] += totals[bp] - previous
                previous = totals[bp]
                self._entries.put((api_key, model, segments[bp].digest), TTL_SECONDS[ttl])
        return CacheUsage(read=read, write_5m=written["5m"], write_1h=written["1h"])


class OpenAIPrefixCache:
    """OpenAI's automatic prompt cache: 1024-token prefixes, then 128-token steps."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries = _ExpiringSet(clock)

    def apply(self, *, scope: tuple[str, ...], tokens: Sequence[int]) -> int:
        """Return the cached tokens of this prompt and remember its prefixes."""
        if len(tokens) < OPENAI_MIN_PREFIX:
            return 0
        digests: list[tuple[int, str]] = []
        hasher = hashlib.sha1()
        start = 0
        for end in range(OPENAI_MIN_PREFIX, len(tokens) + 1, OPENAI_STEP):
            hasher.update(array("q", tokens[start:end]).tobytes())
            digests.append((end, hasher.copy().hexdigest()))
            start = end
        cached = 0
        with self._entries.lock:
            for end, digest in reversed(digests):
                if self._entries.hit((*scope, digest)):
                    cached = end
                    break
            for _, digest in digests:
                self._entries.put((*scope, digest), OPENAI_TTL_SECONDS)
        return cached
