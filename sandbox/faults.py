"""Faults on demand: `x-sandbox-fault: KIND` or `sandbox-fault:KIND` in the last user message.

KIND is one of:
- `429`, `529`, `500`, `503`, optionally `xN` (`529x2`): answer with that status; with `xN`
  only the first N attempts of the same request fail (same API key, fault and body), then one
  succeeds and the count starts again;
- `hang`: accept the request and send nothing until the client gives up;
- `error@N`: an error event in the stream after N tokens (a 500 for a non-stream request);
- `drop@N`: the connection closes abruptly after N tokens, with no terminating events;
- `slow`: one token per second.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["status", "hang", "error", "drop", "slow"]

FAULT_HEADER = "x-sandbox-fault"
_SPEC = (
    r"(?:(?P<status>429|529|500|503)(?:x(?P<times>\d+))?"
    r"|(?P<word>hang|slow)|(?P<at>error|drop)@(?P<after>\d+))"
)
_HEADER_RE = re.compile(rf"^\s*{_SPEC}\s*$", re.IGNORECASE)
_TEXT_RE = re.compile(rf"sandbox-fault:{_SPEC}(?![\w@])", re.IGNORECASE)
# An `xN` counter forgets a request after this long without attempts, so a rerun fails again.
ATTEMPT_MEMORY_SECONDS = 120.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A parsed fault request."""

    kind: FaultKind
    status: int = 0
    times: int | None = None  # status faults: fail only the first `times` attempts
    after: int = 0  # error/drop: tokens sent before the fault


class FaultSpecError(ValueError):
    """The fault header names no known fault."""


def detect(header: str | None, text: str) -> Fault | None:
    """Return the fault asked for by the header (first) or the last user message, if any."""
    if header is not None and header.strip():
        match = _HEADER_RE.match(header)
        if match is None:
            raise FaultSpecError(f"unknown {FAULT_HEADER}: {header!r}")
        return _fault(match)
    match = _TEXT_RE.search(text)
    return _fault(match) if match else None


def _fault(match: re.Match[str]) -> Fault:
    if match["status"]:
        times = int(match["times"]) if match["times"] else None
        return Fault("status", status=int(match["status"]), times=times)
    if match["word"]:
        return Fault("hang" if match["word"].lower() == "hang" else "slow")
    kind: FaultKind = "error" if match["at"].lower() == "error" else "drop"
    return Fault(kind, after=int(match["after"]))


class AttemptCounter:
    """Counts attempts of the same request so `xN` faults fail N times, then recover."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def should_fail(self, fault: Fault, api_key: str, body: bytes) -> bool:
        """Return True when this attempt of a status fault must fail."""
        if fault.times is None:
            return True
        key = hashlib.sha256(f"{api_key}\0{fault}\0".encode() + body).hexdigest()
        now = time.monotonic()
        with self._lock:
            self._forget_before(now - ATTEMPT_MEMORY_SECONDS)
            attempts, _ = self._seen.get(key, (0, now))
            if attempts >= fault.times:
                # Recovered: the next identical request starts a fresh cycle of failures.
                del self._seen[key]
                return False
            self._seen[key] = (attempts + 1, now)
        return True

    def _forget_before(self, cutoff: float) -> None:
        for key in [k for k, (_, at) in self._seen.items() if at < cutoff]:
            del self._seen[key]
