"""OpenAI Chat Completions request validation and honest prompt token counts.

The prompt is counted as OpenAI's chat format is: 3 tokens per message, then the role and the
content (and 1 more plus the name when a name is given), then 3 tokens priming the reply. The
count is kept as a token sequence (the format's markers are ids no text encodes to), so the prefix
cache compares prompts token by token.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from sandbox import tokens
from sandbox.models import ModelSpec, openai_model

_MESSAGE_MARK = (-1, -1, -1)
_NAME_MARK = (-2,)
_PRIMING = (-3, -3, -3)
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class OpenAIError(Exception):
    """An error the OpenAI emulator returns in OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A validated chat request's prompt."""

    model: ModelSpec
    token_ids: tuple[int, ...]
    question: str
    message_count: int
    seed: bytes

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens, chat-format overhead included."""
        return len(self.token_ids)


def parse_chat(body: dict[str, object], *, max_context: int | None) -> ChatPrompt:
    """Validate model and messages and count the prompt."""
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise OpenAIError(400, "you must provide a model parameter")
    messages = body.get("messages")
    if messages is None:
        raise OpenAIError(
            400,
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    model = openai_model(model_id, max_context=max_context)
    if model is None:
        raise OpenAIError(
            404,
            f"The model `{model_id}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    ids: list[int] = []
    tools = body.get("tools")
    if tools:
        ids += tokens.encode(orjson.dumps(tools, option=orjson.OPT_SORT_KEYS).decode())
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            role = message.get("role") if isinstance(message, dict) else None
            raise OpenAIError(
                400,
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', 'user', "
                "'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        ids += _MESSAGE_MARK
        ids += tokens.encode(message["role"])
        if isinstance(message.get("name"), str):
            ids += _NAME_MARK
            ids += tokens.encode(message["name"])
        ids += tokens.encode(_content_text(message, i))
    ids += _PRIMING
    seed = orjson.dumps([model_id, tools, messages], option=orjson.OPT_SORT_KEYS)
    return ChatPrompt(model, tuple(ids), _last_user_text(messages), len(messages), seed)


def parse_max_tokens(body: dict[str, object], prompt: ChatPrompt) -> int:
    """Return the completion cap: max_completion_tokens or max_tokens, else what fits."""
    name = (
        "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    )
    value = body.get(name)
    model = prompt.model
    window = model.context_window
    if prompt.prompt_tokens > window:
        raise OpenAIError(
            400,
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt.prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    if value is None:
        return min(model.max_output, window - prompt.prompt_tokens)
    if not isinstance(value, int) or isinstance(value, bool):
        raise OpenAIError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if value < 1:
        raise OpenAIError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            param=name,
            code="integer_below_min_value",
        )
    if value > model.max_output:
        raise OpenAIError(
            400,
            f"{name} is too large: {value}. This model supports at most {model.max_output} "
            f"completion tokens, whereas you provided {value}.",
            param=name,
            code="invalid_value",
        )
    if prompt.prompt_tokens + value > window:
        raise OpenAIError(
            400,
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt.prompt_tokens + value} tokens ({prompt.prompt_tokens} in the messages, "
            f"{value} in the completion). Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )
    return value


def stop_sequences(body: dict[str, object]) -> list[str]:
    """Return the `stop` parameter as a list."""
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise OpenAIError(
        400, "Invalid type for 'stop': expected a string or an array of strings.", param="stop"
    )


def _content_text(message: dict[str, object], index: int) -> str:
    content = message.get("content")
    text = ""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = [
            p.get("text", "") if p.get("type") == "text" else orjson.dumps(p).decode()
            for p in content
            if isinstance(p, dict)
        ]
        text = "".join(p for p in parts if isinstance(p, str))
    elif content is not None:
        raise OpenAIError(
            400,
            f"Invalid type for 'messages[{index}].content': "
            "expected one of a string or array of objects.",
            param=f"messages[{index}].content",
            code="invalid_type",
        )
    if message.get("tool_calls"):
        text += orjson.dumps(message["tool_calls"], option=orjson.OPT_SORT_KEYS).decode()
    return text


def _last_user_text(messages: list[dict[str, object]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(
                p["text"]
                for p in content
                if isinstance(p, dict)
                and p.get("type") == "text"
                and isinstance(p.get("text"), str)
            )
        return ""
    return ""
