"""Anthropic request validation and the prompt layout that token counts and caching share.

The prompt is laid out as the real API renders it for caching: tools, then system, then messages.
Each block becomes a cache Segment whose digest covers everything up to and including it, so
a `cache_control` breakpoint names exactly its prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from sandbox import tokens
from sandbox.cache import Segment, Ttl
from sandbox.models import ModelSpec, anthropic_model

MAX_CACHE_BREAKPOINTS = 4


class AnthropicError(Exception):
    """An error the Anthropic emulator returns in Anthropic's error body."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


def invalid(message: str) -> AnthropicError:
    """Return a 400 invalid_request_error."""
    return AnthropicError(400, "invalid_request_error", message)


@dataclass(frozen=True, slots=True)
class Prompt:
    """A validated request's prompt: its blocks as cache segments and what the reply needs."""

    model: ModelSpec
    segments: tuple[Segment, ...]
    input_tokens: int
    question: str
    message_count: int
    seed: bytes


def parse_prompt(body: dict[str, object], *, max_context: int | None) -> Prompt:
    """Validate model, messages, system and tools; lay the prompt out in cache segments."""
    model_id = body.get("model")
    if not isinstance(model_id, str):
        raise invalid("model: Field required")
    messages = body.get("messages")
    if messages is None:
        raise invalid("messages: Field required")
    if not isinstance(messages, list):
        raise invalid("messages: Input should be a valid list")
    if not messages:
        raise invalid("messages: at least one message is required")
    for i, message in enumerate(messages):
        _check_message(i, message)
    model = anthropic_model(model_id, max_context=max_context)
    if model is None:
        raise AnthropicError(404, "not_found_error", f"model: {model_id}")
    marked = list(_blocks(body))
    found = sum(1 for _, _, ttl in marked if ttl) + (1 if body.get("cache_control") else 0)
    if found > MAX_CACHE_BREAKPOINTS:
        raise invalid(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {found}."
        )
    top_ttl = _ttl(body.get("cache_control"), "cache_control")
    hasher = hashlib.sha256()
    segments: list[Segment] = []
    for i, (kind, text, ttl) in enumerate(marked):
        hasher.update(kind.encode() + b"\0" + text.encode() + b"\0")
        # Top-level cache_control ("automatic caching") marks the last block.
        breakpoint = ttl or (top_ttl if i == len(marked) - 1 else None)
        segments.append(Segment(tokens.count(text), hasher.hexdigest(), breakpoint))
    canonical = orjson.dumps(
        [model_id, body.get("system"), body.get("tools"), messages], option=orjson.OPT_SORT_KEYS
    )
    return Prompt(
        model=model,
        segments=tuple(segments),
        input_tokens=sum(s.tokens for s in segments),
        question=_last_user_text(messages),
        message_count=len(messages),
        seed=canonical,
    )


def parse_max_tokens(body: dict[str, object], model: ModelSpec) -> int:
    """Validate max_tokens: required, at least 1, at most the model's output cap."""
    value = body.get("max_tokens")
    if value is None:
        raise invalid("max_tokens: Field required")
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid("max_tokens: Input should be a valid integer")
    if value < 1:
        raise invalid("max_tokens: Input should be greater than or equal to 1")
    if value > model.max_output:
        raise invalid(
            f"max_tokens: {value} > {model.max_output}, which is the maximum allowed number of "
            f"output tokens for {model.id}"
        )
    return value


def check_context(prompt: Prompt, max_tokens: int) -> None:
    """Refuse a prompt that, with max_tokens, does not fit the model's context window."""
    window = prompt.model.context_window
    if prompt.input_tokens > window:
        raise invalid(f"prompt is too long: {prompt.input_tokens} tokens > {window} maximum")
    if prompt.input_tokens + max_tokens > window:
        raise invalid(
            f"input length and `max_tokens` exceed context limit: {prompt.input_tokens} + "
            f"{max_tokens} > {window}, decrease input length or `max_tokens` and try again"
        )


def _check_message(index: int, message: object) -> None:
    if not isinstance(message, dict):
        raise invalid(f"messages.{index}: Input should be a valid dictionary")
    if message.get("role") not in ("user", "assistant"):
        raise invalid(f"messages.{index}.role: Input should be 'user' or 'assistant'")
    content = message.get("content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"messages.{index}.content: Input should be a valid list")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise invalid(f"messages.{index}.content.{j}: Input should be a valid content block")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise invalid(f"messages.{index}.content.{j}.text: Field required")


def _blocks(body: dict[str, object]) -> Iterator[tuple[str, str, Ttl | None]]:
    """Yield (kind, canonical text, breakpoint TTL) for tools, system blocks, message blocks."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise invalid("tools: Input should be a valid list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise invalid(f"tools.{i}: Input should be a valid dictionary")
        yield "tool", _canonical(tool), _ttl(tool.get("cache_control"), f"tools.{i}")
    system = body.get("system")
    if isinstance(system, str):
        if system:
            yield "system", system, None
    elif isinstance(system, list):
        for i, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise invalid(f"system.{i}: Input should be a text block")
            text = block.get("text")
            if not isinstance(text, str):
                raise invalid(f"system.{i}.text: Field required")
            yield "system", text, _ttl(block.get("cache_control"), f"system.{i}")
    elif system is not None:
        raise invalid("system: Input should be a valid string or list of text blocks")
    for i, message in enumerate(body["messages"]):  # type: ignore[arg-type]
        role = f"\n\n{message['role']}: "
        content = message["content"]
        if isinstance(content, str):
            yield "message", role + content, None
            continue
        for j, block in enumerate(content):
            text = block["text"] if block["type"] == "text" else _canonical(block)
            ttl = _ttl(block.get("cache_control"), f"messages.{i}.content.{j}")
            yield "message", (role if j == 0 else "") + text, ttl


def _ttl(control: object, where: str) -> Ttl | None:
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise invalid(f"{where}.cache_control.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl not in ("5m", "1h"):
        raise invalid(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    return ttl  # type: ignore[return-value]


def _canonical(block: dict[str, object]) -> str:
    # cache_control is not content: moving a breakpoint must not change the prefix it marks.
    content = {k: v for k, v in block.items() if k != "cache_control"}
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()


def _last_user_text(messages: list[dict[str, object]]) -> str:
    for message in reversed(messages):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        return "\n".join(b["text"] for b in content if b["type"] == "text")  # type: ignore[index,union-attr]
    return ""
