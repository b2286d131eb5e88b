"""From a conversation to a provider request: validation, history, the continue turn."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.utils.html import escape

from chat import errors
from chat.models import Conversation, Message
from chat.providers.base import ChatMessage, ChatRequest
from chat.providers.context import FitResult, fit_to_context
from chat.providers.specs import ModelInfo
from chat.providers.tokens import count_prompt_tokens
from chat.services.events import TurnMode

# Newer Claude models refuse an assistant prefill, so a continuation is asked for in a
# user turn that follows the partial answer (for every provider alike: one behaviour).
CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, "
    "without repeating anything and without any preamble."
)
CONTINUABLE = (Message.Status.STOPPED, Message.Status.INTERRUPTED)


def validate_text(text: object) -> str:
    """The message text, or a specific refusal (empty, not text, too long)."""
    if not isinstance(text, str):
        raise errors.InvalidInput("The message must be text.", code="invalid_request")
    stripped = text.strip()
    if not stripped:
        raise errors.InvalidInput("Type a message before sending.", code="message_empty")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(stripped) > limit:
        raise errors.InvalidInput(
            f"That message is {len(stripped):,} characters; the limit is {limit:,}.",
            code="message_too_long",
            limit=limit,
        )
    return stripped


def merge_turns(history: list[tuple[str, str]]) -> tuple[ChatMessage, ...]:
    """Join consecutive messages of one role (a failed answer leaves two user turns)."""
    merged: list[ChatMessage] = []
    for role, content in history:
        if merged and merged[-1].role == role:
            merged[-1] = ChatMessage(role, f"{merged[-1].content}\n\n{content}")  # type: ignore[arg-type]
        else:
            merged.append(ChatMessage(role, content))  # type: ignore[arg-type]
    return tuple(merged)


def send_turns(history: Sequence[tuple[str, str]], text: str) -> list[tuple[str, str]]:
    """(role, text) turns to send a new message with: the earlier ones that have text, then it."""
    return [*((role, content) for role, content in history if content), ("user", text)]


def prompt_turns(*, conversation: Conversation, mode: TurnMode, text: str) -> tuple[list, str]:
    """(role, text) turns to send, and the partial answer a continuation extends.

    Reads only: nothing is stored until the budget has agreed to the call.
    """
    rows = list(
        Message.objects.filter(conversation=conversation)
        .order_by("created_at", "id")
        .values_list("id", "role", "content", "status")
    )
    if mode == "send":
        return send_turns([(role, content) for _, role, content, _ in rows], text), ""
    if mode == "regenerate":
        last_user = max(
            (i for i, (_, role, _, _) in enumerate(rows) if role == "user"), default=None
        )
        if last_user is None:
            raise errors.InvalidInput("There is no message to answer again yet.")
        return [(role, content) for _, role, content, _ in rows[: last_user + 1] if content], ""
    if not rows or rows[-1][1] != "assistant" or rows[-1][3] not in CONTINUABLE:
        raise errors.InvalidInput("Only a stopped or interrupted answer can be continued.")
    prefix = rows[-1][2]
    if not prefix:
        raise errors.InvalidInput("That answer has no text to continue; regenerate it instead.")
    turns = [(role, content) for _, role, content, _ in rows[:-1] if content]
    return [*turns, ("assistant", prefix), ("user", CONTINUE_INSTRUCTION)], prefix


@dataclass(frozen=True, slots=True)
class PromptDocument:
    """An attached document as a turn sends it: its name, text and stored token counts."""

    name: str
    text: str
    # Counted once when the document was read: {"o200k_base": n, "cl100k_base": n, "claude": n}.
    token_counts: Mapping[str, int] = field(default_factory=dict)


def tokenizer_key(model: ModelInfo) -> str:
    """The key of a document's stored token counts that applies to a model."""
    return "claude" if model.provider == "anthropic" else model.encoding


def document_block(document: PromptDocument) -> str:
    """The document's text labelled with its name, as one system block."""
    return f'<document name="{escape(document.name)}">\n{document.text}\n</document>'


def reply_tokens(model: ModelInfo, max_tokens: int | None = None) -> int:
    """The reply's max_tokens: the request's or the default, capped by the model."""
    return min(max_tokens or settings.CHAT_DEFAULT_MAX_TOKENS, model.max_output)


def build_request(
    *,
    conversation: Conversation,
    model: ModelInfo,
    turns: list[tuple[str, str]],
    max_tokens: int | None,
    temperature: float | None = None,
    documents: Sequence[PromptDocument] = (),
) -> ChatRequest:
    """The provider request: max_tokens always set, the conversation as the cache key.

    Attached documents follow the system prompt, in the order they were attached, so the
    adapters send them before the history, where the prompt cache covers them.
    """
    return ChatRequest(
        model=model.id,
        messages=merge_turns(turns),
        max_tokens=reply_tokens(model, max_tokens),
        system=conversation.system_prompt,
        temperature=temperature,
        cache_key=str(conversation.id),
        documents=tuple(document_block(d) for d in documents),
    )


async def count_request_tokens(
    model: ModelInfo, request: ChatRequest, documents: Sequence[PromptDocument] = ()
) -> int:
    """The prompt's tokens, the documents' texts taken from their stored counts.

    A large document is then not encoded again (nor sent to Claude's count_tokens) on every
    turn: the rest of the prompt, with each document's label and framing, is counted as usual.
    The sum can differ from a whole count by a token where a label meets its text. A document
    without a stored count for the model's tokenizer makes the whole prompt counted.
    """
    key = tokenizer_key(model)
    stored = [d.token_counts.get(key) for d in documents]
    if not documents or not all(isinstance(n, int) for n in stored):
        return await count_prompt_tokens(model, request)
    labels = tuple(document_block(PromptDocument(d.name, "")) for d in documents)
    rest = await count_prompt_tokens(model, replace(request, documents=labels))
    return rest + sum(stored)  # type: ignore[arg-type]


def fit_request(
    model: ModelInfo,
    request: ChatRequest,
    prompt_tokens: int | Callable[[ChatRequest], int],
    *,
    documents: Sequence[PromptDocument] = (),
) -> FitResult:
    """fit_to_context, with a refusal that names the attached documents when they are the cause."""
    try:
        return fit_to_context(model, request, prompt_tokens)
    except errors.ContextTooLong as exc:
        if not documents:
            raise
        names = ", ".join(f"“{d.name}”" for d in documents)
        needed = exc.extra.get("needed", 0)
        raise errors.ContextTooLong(
            f"The attached documents ({names}) with the system prompt, your message and a "
            f"{request.max_tokens:,}-token reply would need {needed:,} tokens, but "
            f"{model.label} takes {model.context_window:,}. Detach a document or pick a model "
            "with a larger context.",
            needed=needed,
            window=model.context_window,
        ) from exc
