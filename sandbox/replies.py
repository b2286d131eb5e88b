"""Deterministic, readable replies: restate the question, describe the request, add filler.

The same prompt always gets the same reply. `sandbox-reply:N` in the last user message (or the
header `x-sandbox-reply-tokens: N`) makes the reply exactly N tokens long (max_tokens still cuts).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sandbox import tokens as tok

REPLY_HEADER = "x-sandbox-reply-tokens"
_REPLY_RE = re.compile(r"sandbox-reply:(\d+)")
QUESTION_CHARS = 240
StopKind = Literal["end", "max_tokens", "stop_sequence"]

_FILLER = (
    "The sandbox answers every prompt the same way, so tests can rely on the text.",
    "Nothing here came from a real model; the words are chosen by a hash of your prompt.",
    "- A list item, to show that Markdown renders.",
    "- Another item, with some `inline code` in it.",
    "Token counts come from tiktoken's o200k_base encoding, honestly counted.",
    "Tokens are paced at the configured rate after a short time to first token.",
    "Prompt caching is simulated in memory, per API key and model.",
    "Faults can be injected with a header or a directive in the message.",
    "If this were a real model, it would now say something insightful about your question.",
    "**Bold claims** deserve evidence; this sandbox offers only repetition.",
    "A short sentence, for rhythm.",
    "Use `sandbox-reply:N` to ask for a reply exactly N tokens long.",
)


@dataclass(frozen=True, slots=True)
class Reply:
    """The pieces to stream, the tokens they hold, and why the reply stopped."""

    pieces: tuple[tok.Piece, ...]
    output_tokens: int
    stop: StopKind
    stop_sequence: str | None = None

    @property
    def text(self) -> str:
        """The whole reply text."""
        return "".join(p.text for p in self.pieces)


def requested_length(header: str | None, text: str) -> int | None:
    """Return the exact reply length asked for by header or directive, if any."""
    if header and header.strip().isdigit():
        return int(header.strip())
    match = _REPLY_RE.search(text)
    return int(match[1]) if match else None


def compose(
    *,
    seed: bytes,
    question: str,
    model: str,
    message_count: int,
    input_tokens: int,
    max_tokens: int,
    exact_tokens: int | None = None,
    stop_sequences: Sequence[str] = (),
) -> Reply:
    """Build the reply for a prompt, cut at a stop sequence or max_tokens."""
    digest = hashlib.sha256(seed).digest()
    shown = question if len(question) <= QUESTION_CHARS else question[:QUESTION_CHARS] + "..."
    head = (
        f'You asked: "{shown}"\n\n'
        f"This is the sandbox answering as `{model}`: {message_count} message"
        f"{'' if message_count == 1 else 's'}, {input_tokens} input tokens, "
        f"max_tokens {max_tokens}.\n\n"
    )
    first = digest[0] % len(_FILLER)
    count = 2 + digest[1] % 3
    filler = [_FILLER[(first + i * 5) % len(_FILLER)] for i in range(count)]
    text = head + _join(filler)
    ids = tok.encode(text)
    if exact_tokens is not None:
        i = count
        while len(ids) < exact_tokens:
            # Grow by whole sentences, then cut to the exact length.
            filler.extend(_FILLER[(first + (i + k) * 5) % len(_FILLER)] for k in range(8))
            i += 8
            ids = tok.encode(head + _join(filler))
        ids = ids[:exact_tokens]
        text = tok.encoding().decode(ids)
    stop: StopKind = "end"
    matched: str | None = None
    cut_at = min(((text.find(s), s) for s in stop_sequences if s and s in text), default=None)
    if cut_at is not None:
        stop, matched = "stop_sequence", cut_at[1]
        ids = tok.encode(text[: cut_at[0]])
    if len(ids) > max_tokens:
        stop, matched = "max_tokens", None
        ids = ids[:max_tokens]
    pieces = tuple(tok.pieces(ids))
    return Reply(pieces=pieces, output_tokens=len(ids), stop=stop, stop_sequence=matched)


def _join(sentences: list[str]) -> str:
    # List items form one list set apart by blank lines; prose sentences flow together.
    out = ""
    previous_item = False
    for sentence in sentences:
        item = sentence.startswith("- ")
        if out:
            out += ("\n" if previous_item else "\n\n") if item or previous_item else " "
            if previous_item and not item:
                out += "\n"
        out += sentence
        previous_item = item
    return out
