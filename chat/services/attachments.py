"""Documents attached to conversations: attach, detach, and what a turn sends.

An attached document's text goes into the system prompt (after the conversation's own
instructions), where the prompt cache covers it on every turn. Attaching refuses what could never
be sent: another user's document, one not ready (or failed), one already attached, more than
CHAT_DOCUMENTS_PER_CONVERSATION, and documents that with the system prompt and a reply do not fit
the conversation's model. The turn checks the fit again (chat/services/prompts.py fit_request),
since the model can change between turns.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from chat import errors
from chat.models import Conversation, ConversationDocument, Document
from chat.providers import catalog, specs, tokens
from chat.providers.base import ChatRequest
from chat.providers.pricing import priced
from chat.providers.specs import ModelInfo
from chat.services.conversations import conversation_get_for_user
from chat.services.prompts import PromptDocument, document_block, reply_tokens, tokenizer_key

# Columns a list of documents needs: never the upload itself, nor the text unless counted.
LIST_FIELDS = ("id", "name", "kind", "status", "chars", "pages", "token_counts", "created_at")


def _uuid(value: object) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except (ValueError, TypeError):
        raise errors.NotFound("That document does not exist.") from None


def _conversation_locked(*, user_id: int, conversation_id: uuid.UUID | str) -> Conversation:
    """The user's conversation, locked until the transaction ends (attachments in series)."""
    try:
        return Conversation.objects.select_for_update().get(pk=conversation_id, user_id=user_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError):
        raise errors.NotFound("That conversation does not exist.") from None


def _attachable(document: Document) -> None:
    """Refuse a document that is not ready, failed, or has no text."""
    if document.status == Document.Status.FAILED:
        reason = f" ({document.error_message})" if document.error_message else ""
        raise errors.InvalidInput(
            f"“{document.name}” could not be read{reason}, so it cannot be attached."
        )
    if document.status != Document.Status.READY:
        raise errors.InvalidInput(
            f"“{document.name}” is still being processed; attach it once it is ready."
        )
    if not document.chars:
        raise errors.InvalidInput(f"“{document.name}” has no text a model could read.")


def conversation_model(conversation: Conversation) -> ModelInfo | None:
    """The model the conversation's next turn will most likely use (its last, or the default)."""
    model = specs.spec(conversation.model) if conversation.model else None
    return priced(model) if model is not None else catalog.default_model()


def document_text_tokens(document: Document, model: ModelInfo) -> int:
    """Tokens of a document's text for a model: the count stored when it was processed, if any."""
    stored = (document.token_counts or {}).get(tokenizer_key(model))
    if isinstance(stored, int):
        return stored
    if model.provider == "anthropic":
        return tokens.claude_text_tokens(document.text)
    return tokens.count_text(document.text, model.encoding)


def prompt_tokens_needed(
    *, model: ModelInfo, system_prompt: str, documents: Sequence[Document]
) -> int:
    """The system prompt, the documents and a reply, in the model's tokens (before any message)."""
    # Each block's framing and label as the adapters send them; the texts are added after.
    labels = tuple(document_block(PromptDocument(d.name, "")) for d in documents)
    frame = ChatRequest(model.id, (), 1, system=system_prompt, documents=labels)
    framing = tokens.local_prompt_tokens(model, frame)
    texts = sum(document_text_tokens(d, model) for d in documents)
    return framing + texts + reply_tokens(model)


def _check_fit(conversation: Conversation, documents: Sequence[Document]) -> None:
    model = conversation_model(conversation)
    if model is None:
        return  # no provider configured: nothing to fit; the turn will say so
    needed = prompt_tokens_needed(
        model=model, system_prompt=conversation.system_prompt, documents=documents
    )
    if needed > model.context_window:
        noun = "These documents" if len(documents) > 1 else "This document"
        raise errors.InvalidInput(
            f"{noun} would need {needed:,} tokens with the system prompt and a "
            f"{reply_tokens(model):,}-token reply, but {model.label} takes "
            f"{model.context_window:,}. Detach a document or pick a model with a larger context.",
            code="context_too_long",
            needed=needed,
            window=model.context_window,
        )


@transaction.atomic
def document_attach(
    *, user_id: int, conversation_id: uuid.UUID | str, document_id: uuid.UUID | str
) -> ConversationDocument:
    """Attach one of the user's ready documents to one of their conversations, or refuse."""
    conversation = _conversation_locked(user_id=user_id, conversation_id=conversation_id)
    try:
        document = Document.objects.defer("data").get(pk=_uuid(document_id), user_id=user_id)
    except Document.DoesNotExist:
        raise errors.NotFound("That document does not exist.") from None
    _attachable(document)
    attached = [
        link.document
        for link in ConversationDocument.objects.filter(conversation=conversation)
        .select_related("document")
        .defer("document__data")
    ]
    if any(d.id == document.id for d in attached):
        raise errors.InvalidInput(f"“{document.name}” is already attached to this conversation.")
    limit = settings.CHAT_DOCUMENTS_PER_CONVERSATION
    if len(attached) >= limit:
        raise errors.InvalidInput(
            f"A conversation can have {limit} documents attached at most; detach one first."
        )
    _check_fit(conversation, [*attached, document])
    try:
        with transaction.atomic():
            return ConversationDocument.objects.create(conversation=conversation, document=document)
    except IntegrityError:  # attached by a concurrent request a moment ago
        raise errors.InvalidInput(
            f"“{document.name}” is already attached to this conversation."
        ) from None


def document_detach(
    *, user_id: int, conversation_id: uuid.UUID | str, document_id: uuid.UUID | str
) -> None:
    """Take a document off a conversation (the document itself stays)."""
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    deleted, _ = ConversationDocument.objects.filter(
        conversation=conversation, document_id=_uuid(document_id), document__user_id=user_id
    ).delete()
    if not deleted:
        raise errors.NotFound("That document is not attached to this conversation.")


def conversation_documents(*, conversation_id: uuid.UUID | str) -> list[Document]:
    """The documents attached to a conversation, in the order they were attached."""
    return list(
        Document.objects.filter(conversationdocument__conversation_id=conversation_id)
        .order_by("conversationdocument__attached_at", "conversationdocument__id")
        .only(*LIST_FIELDS)
    )


def documents_attachable(*, user_id: int, conversation_id: uuid.UUID | str) -> list[Document]:
    """The user's ready documents not yet attached to the conversation, newest first."""
    return list(
        Document.objects.filter(user_id=user_id, status=Document.Status.READY)
        .exclude(conversationdocument__conversation_id=conversation_id)
        .order_by("-created_at")
        .only(*LIST_FIELDS)
    )


@dataclass(frozen=True, slots=True)
class AttachmentPanel:
    """What a conversation page shows of documents: those attached and those that could be."""

    attached: list[Document]
    attachable: list[Document]


def attachment_panel(*, user_id: int, conversation_id: uuid.UUID | str) -> AttachmentPanel:
    """The conversation's attached documents and the user's others ready to attach."""
    return AttachmentPanel(
        attached=conversation_documents(conversation_id=conversation_id),
        attachable=documents_attachable(user_id=user_id, conversation_id=conversation_id),
    )


def conversation_for_turn(
    *, user_id: int, conversation_id: uuid.UUID | str
) -> tuple[Conversation, tuple[PromptDocument, ...]]:
    """The user's conversation and its attached ready documents' text, in attachment order."""
    conversation = conversation_get_for_user(user_id=user_id, conversation_id=conversation_id)
    rows = (
        Document.objects.filter(
            conversationdocument__conversation_id=conversation.id, status=Document.Status.READY
        )
        .order_by("conversationdocument__attached_at", "conversationdocument__id")
        .values_list("name", "text", "token_counts")
    )
    documents = tuple(
        PromptDocument(name, text, counts or {}) for name, text, counts in rows if text
    )
    return conversation, documents
