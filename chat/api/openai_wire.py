"""Turn events as OpenAI chat.completion objects and SSE chunks (built as bytes, cheaply).

A delta chunk is a fixed prefix, the JSON-encoded text and a fixed suffix: no dict and
no pydantic object per token.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from chat.providers.base import Usage

DONE: Final = b"data: [DONE]\n\n"
LENGTH_REASONS: Final = frozenset({"max_tokens", "length"})


def finish_reason(stop_reason: str) -> str:
    return "length" if stop_reason in LENGTH_REASONS else "stop"


def usage_body(usage: Usage | None, cost_micros: int) -> dict[str, Any]:
    """OpenAI's usage (prompt tokens include cached ones), plus what the call cost."""
    usage = usage or Usage()
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "cache_write_tokens": usage.cache_write_tokens,
        "cost_usd": cost_micros / 1_000_000,
    }


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class ChunkWriter:
    """The chat.completion.chunk lines of one streamed answer."""

    def __init__(self, *, completion_id: str, model: str) -> None:
        self.head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        opening = orjson.dumps({**self.head, "choices": [{"index": 0, "delta": {"content": ""}}]})
        # Everything around the text of a delta chunk, split once.
        before, after = opening.split(b'"content":""', 1)
        self._before = b"data: " + before + b'"content":'
        # `after` closes the delta, then the choice: the finish_reason goes between.
        self._after = after[:1] + b',"finish_reason":null' + after[1:] + b"\n\n"

    def role(self) -> bytes:
        choice = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        return sse({**self.head, "choices": [choice]})

    def delta(self, text: str) -> bytes:
        return self._before + orjson.dumps(text) + self._after

    def finish(self, stop_reason: str) -> bytes:
        choice = {"index": 0, "delta": {}, "finish_reason": finish_reason(stop_reason)}
        return sse({**self.head, "choices": [choice]})

    def usage(self, usage: Usage | None, cost_micros: int) -> bytes:
        return sse({**self.head, "choices": [], "usage": usage_body(usage, cost_micros)})


def completion(
    *, completion_id: str, model: str, content: str, stop_reason: str, usage: Usage, cost: int
) -> dict[str, Any]:
    """The non-streaming chat.completion object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": finish_reason(stop_reason),
                "logprobs": None,
            }
        ],
        "usage": usage_body(usage, cost),
    }
