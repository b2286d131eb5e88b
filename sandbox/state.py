"""The sandbox's settings and in-memory state, shared by both emulated providers."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import orjson
from starlette.requests import Request

from sandbox.cache import AnthropicPromptCache, OpenAIPrefixCache
from sandbox.faults import AttemptCounter, Fault
from sandbox.streaming import Pace
from sandbox.trace import TraceLog

SLOW_TOKENS_PER_SECOND = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    """How the sandbox paces replies and caps context windows."""

    tokens_per_second: float = 40.0
    ttft_ms: int = 300
    max_context: int | None = None


@dataclass
class Sandbox:
    """Everything one sandbox app keeps in memory."""

    settings: Settings
    anthropic_cache: AnthropicPromptCache = field(default_factory=AnthropicPromptCache)
    openai_cache: OpenAIPrefixCache = field(default_factory=OpenAIPrefixCache)
    attempts: AttemptCounter = field(default_factory=AttemptCounter)
    # None unless tracing was asked for (sandbox.trace): benchmarks only.
    trace: TraceLog | None = None

    def pace(self, *, start: float, fault: Fault | None) -> Pace:
        """Return the pacing for one reply (one token a second under the `slow` fault)."""
        slow = fault is not None and fault.kind == "slow"
        rate = SLOW_TOKENS_PER_SECOND if slow else self.settings.tokens_per_second
        return Pace(start, self.settings.ttft_ms / 1000, rate)


def sandbox_of(request: Request) -> Sandbox:
    """Return the sandbox state of the app serving request."""
    return request.app.state.sandbox  # type: ignore[no-any-return]


def new_id(prefix: str) -> str:
    """Return a random id in the provider's style (`msg_...`, `chatcmpl-...`)."""
    return prefix + secrets.token_urlsafe(18).replace("-", "x").replace("_", "y")


def now_unix() -> int:
    """Return the time in whole Unix seconds."""
    return int(time.time())


def parse_json_object(raw: bytes) -> dict[str, object]:
    """Parse a request body that must be a JSON object; raise ValueError otherwise."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("the request body must be a JSON object")
    return value


def bearer_key(request: Request) -> str:
    """Return the key of an `Authorization: Bearer` header, or ''."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""
