"""An optional record of when each streamed delta left the sandbox, for latency benchmarks.

Off by default. Turned on with `python -m sandbox --trace`, `SandboxServer(trace=True)` or
`create_app(trace=True)`: every streamed reply (Anthropic or OpenAI) then records the
wall-clock time (`time.time()`) at which each text delta was handed to the server, with its
text and token count, so a benchmark can tell how long a token took from here to a page.

- `GET /sandbox/trace` returns `{"traces": [...]}`, oldest first; each trace is
  `{"id", "provider", "model", "question", "started", "deltas": [[time, tokens, text], ...]}`
  (`question` is the last user message, cut to 240 characters, so a caller can find its own
  request; `started` is the wall-clock time the request arrived).
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


@dataclass(slots=True)
class StreamTrace:
    """One streamed reply: when it started and when each delta was emitted."""

    id: str
    provider: str
    model: str
    question: str
    started: float
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
            "started": self.started,
            "deltas": self.deltas,
        }


class TraceLog:
    """The traces of the last MAX_TRACES streamed replies."""

    def __init__(self, limit: int = MAX_TRACES) -> None:
        self._traces: deque[StreamTrace] = deque(maxlen=limit)

    def open(self, *, id: str, provider: str, model: str, question: str) -> StreamTrace:
        """Start the trace of one streamed reply."""
        trace = StreamTrace(id, provider, model, question[:_QUESTION_CHARS], time.time())
        self._traces.append(trace)
        return trace

    def clear(self) -> None:
        self._traces.clear()

    def as_list(self) -> list[dict[str, object]]:
        return [trace.as_dict() for trace in self._traces]


def trace_endpoint(request: Request) -> Response:
    """GET /sandbox/trace: every recorded trace; DELETE /sandbox/trace: forget them."""
    log: TraceLog = request.app.state.sandbox.trace
    if request.method == "DELETE":
        log.clear()
        return JSONResponse({"traces": []})
    return JSONResponse({"traces": log.as_list()})
