"""Parse a /v1/chat/completions body: every field's type and size checked, clear refusals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson
from django.conf import settings

from chat import errors
from chat.services.billing import UNSET

ROLES: Final = frozenset({"system", "developer", "user", "assistant"})
MAX_STOP_SEQUENCES: Final = 4  # as OpenAI
# Accepted but not yet supported by the pipeline: refused, never silently ignored.
UNSUPPORTED: Final = {
    "tools": "Tools are not supported yet.",
    "functions": "Functions are not supported yet.",
    "logprobs": "`logprobs` is not supported.",
}


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """What a program asked for, ready for the turn pipeline."""

    model: str
    system: str
    history: tuple[tuple[str, str], ...]  # (role, text) before the last user message
    text: str  # the last user message: the turn
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    # Our addition (openai SDKs: `extra_body={"team": ...}`): the team to bill, its id or
    # exact name, or None for the personal budget; UNSET: the key owner's first team.
    # Checked, with membership, by chat.services.billing.
    team: object = UNSET


def invalid(message: str, param: str | None = None) -> errors.InvalidInput:
    return errors.InvalidInput(message, code="invalid_request", param=param)


def parse_completion_request(body: bytes) -> CompletionRequest:
    """The request, or InvalidInput naming the offending field (`extra["param"]`)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    for name, message in UNSUPPORTED.items():
        if data.get(name) not in (None, False, []):
            raise invalid(message, name)
    if data.get("n", 1) not in (1, None):
        raise invalid("Only n=1 is supported.", "n")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("`model` is required and must be a string.", "model")
    system, turns = _messages(data.get("messages"))
    stream = _optional(data, "stream", bool) or False
    options = _optional(data, "stream_options", dict) or {}
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise invalid("`stream_options.include_usage` must be a boolean.", "stream_options")
    max_tokens = _optional(data, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = _optional(data, "max_tokens", int)
    if max_tokens is not None and max_tokens < 1:
        raise invalid("`max_tokens` must be at least 1.", "max_tokens")
    temperature = _optional(data, "temperature", (int, float))
    if temperature is not None and not 0 <= temperature <= 2:
        raise invalid("`temperature` must be between 0 and 2.", "temperature")
    _optional(data, "user", str)
    stop = _stop(data.get("stop"))
    return CompletionRequest(
        model=model[:100],
        system=system,
        history=tuple(turns[:-1]),
        text=turns[-1][1],
        stream=stream,
        include_usage=stream and include_usage,
        max_tokens=max_tokens,
        temperature=None if temperature is None else float(temperature),
        stop=stop,
        team=data.get("team", UNSET),
    )


def _optional(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(name)
    if value is None:
        return None
    # A JSON true is a bool, never a number (though Python counts bool as an int).
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise invalid(f"`{name}` has the wrong type.", name)
    return value


def _stop(value: object) -> tuple[str, ...]:
    """`stop`: a string, or a list of at most 4 strings; none of them empty."""
    if value is None:
        return ()
    sequences = [value] if isinstance(value, str) else value
    if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
        raise invalid(
            f"`stop` must be a string or a list of up to {MAX_STOP_SEQUENCES} strings.", "stop"
        )
    if len(sequences) > MAX_STOP_SEQUENCES:
        raise invalid(
            f"`stop` can hold at most {MAX_STOP_SEQUENCES} sequences; it has {len(sequences)}.",
            "stop",
        )
    if not all(sequences):
        raise invalid("`stop` sequences must not be empty strings.", "stop")
    return tuple(dict.fromkeys(sequences))  # in order, without repeats


def _messages(value: object) -> tuple[str, list[tuple[str, str]]]:
    """The system prompt and the (role, text) turns; the last one must be the user's."""
    if not isinstance(value, list) or not value:
        raise invalid("`messages` must be a non-empty list.", "messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise invalid(
                f"messages[{index}] must be an object with a role of system, developer, user "
                "or assistant.",
                "messages",
            )
        text = _text(message.get("content"), index)
        if message["role"] in ("system", "developer"):
            system.append(text)
        else:
            turns.append((message["role"], text))
    if not turns or turns[-1][0] != "user":
        raise invalid("The last message must be the user's.", "messages")
    prompt = "\n\n".join(part for part in system if part.strip()).strip()
    if len(prompt) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise invalid(
            f"The system prompt is {len(prompt):,} characters; the limit is "
            f"{settings.CHAT_MAX_MESSAGE_CHARS:,}.",
            "messages",
        )
    return prompt, turns


def _text(content: object, index: int) -> str:
    """A message's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return "".join(part["text"] for part in content)
    raise invalid(
        f"messages[{index}].content must be a string or a list of text parts.", "messages"
    )
