"""An optional record of when each streamed delta left the sandbox, for latency benchmarks.

Off by default. Turned on with `python -m sandbox --trace`, `SandboxServer(trace=True)` or
`create_app(trace=True)`: every streamed reply (Anthropic or OpenAI) then records the
wall-clock time (`time.time()`) at which each text delta was handed to the server, with its
text and token count, so a benchmark can tell how long a token took from here to a page.

- `GET /sandbox/trace` returns `{"traces": [...]}`, oldest first; each trace is
  `{"id", "provider", "model", "question", "system", "started", "deltas": [[time, tokens, text],
  ...]}` (`question` is the last user message, cut to 240 characters, so a caller can find its
  own request; `system` is the request's system blocks (Anthropic) or system messages (OpenAI),
  each `{"text": its first 500 characters, "chars", "cache_control"}`, so a caller can see what
  went before the history and where the cache breakpoints were; `started` is the wall-clock
  time the request arrived).
- `DELETE /sandbox/trace` forgets them all.

When off, these routes do not exist and a stream does one `is None` test per delta. Only the
last `MAX_TRACES` replies are kept.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.tokens import Piece

MAX_TRACES = 1000
_QUESTION_CHARS = 240
_SYSTEM_CHARS = 500


@dataclass(slots=True)
class StreamTrace:
    """One streamed reply: when it started and when each delta was emitted."""

    id: str
    provider: str
    model: str
    question: str
    started: float
    system: list[dict[str, object]] = field(default_factory=list)
    deltas: list[tuple[float, int, str]] = field(default_factory=list)

    def record(self, piece: Piece) -> None:
        """Note that piece is being emitted now."""
        self.deltas.append((time.time(), piece.tokens, piece.text))

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "question": self.question,
            "system": self.system,
            "started": self.started,
            "deltas": self.deltas,
        }


class TraceLog:
    """The traces of the last MAX_TRACES streamed replies."""

    def __init__(self, limit: int = MAX_TRACES) -> None:
        self._traces: deque[StreamTrace] = deque(maxlen=limit)

    def open(
        self, *, id: str, provider: str, model: str, question: str, body: dict[str, object]
    ) -> StreamTrace:
        """Start the trace of one streamed reply."""
        trace = StreamTrace(
            id, provider, model, question[:_QUESTION_CHARS], time.time(), system_of(body)
        )
        self._traces.append(trace)
        return trace

    def clear(self) -> None:
        self._traces.clear()

    def as_list(self) -> list[dict[str, object]]:
        return [trace.as_dict() for trace in self._traces]


def system_of(body: dict[str, object]) -> list[dict[str, object]]:
    """A request's system blocks (Anthropic) or system and developer messages (OpenAI)."""
    raw = body.get("system")
    if raw is None:
        messages = body.get("messages")
        raw = [
            {"text": m.get("content")}
            for m in (messages if isinstance(messages, list) else ())
            if isinstance(m, dict) and m.get("role") in ("system", "developer")
        ]
    blocks = [{"text": raw}] if isinstance(raw, str) else raw
    found: list[dict[str, object]] = []
    for block in blocks if isinstance(blocks, list) else ():
        text = block.get("text") if isinstance(block, dict) else None
        text = text if isinstance(text, str) else ""
        found.append(
            {
                "text": text[:_SYSTEM_CHARS],
                "chars": len(text),
                "cache_control": block.get("cache_control") if isinstance(block, dict) else None,
            }
        )
    return found


def trace_endpoint(request: Request) -> Response:
    """GET /sandbox/trace: every recorded trace; DELETE /sandbox/trace: forget them."""
    log: TraceLog = request.app.state.sandbox.trace
    if request.method == "DELETE":
        log.clear()
        return JSONResponse({"traces": []})
    return JSONResponse({"traces": log.as_list()})
