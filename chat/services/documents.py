"""Documents: upload (checked, stored, queued), processing by a task, listing and deletion.

Processing is idempotent, as every task must be (chat/worker.py): a document that is already
ready or failed is left as it is, and one deleted meanwhile is skipped. A run cut short by a
dead worker starts again from the stored bytes; after TASKS_MAX_ATTEMPTS - 1 such runs the
document is marked failed, so a file that kills the worker cannot do so forever.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from chat import errors
from chat.models import Document
from chat.providers import tokens
from chat.services import extraction

logger = logging.getLogger(__name__)

FINISHED = (Document.Status.READY, Document.Status.FAILED)


def document_list(*, user_id: int) -> QuerySet[Document]:
    """The user's documents, newest first, without their bytes or text."""
    return Document.objects.filter(user_id=user_id).defer("data", "text")


def document_get_for_user(*, user_id: int, document_id: uuid.UUID | str) -> Document:
    """The user's document (without bytes or text), or NotFound (never another user's)."""
    try:
        return document_list(user_id=user_id).get(pk=document_id)
    except (Document.DoesNotExist, ValidationError, ValueError):
        raise errors.NotFound("That document does not exist.") from None


def document_upload(*, user_id: int, name: str, data: bytes) -> Document:
    """Check an upload by its content, store it pending, and queue its processing on commit."""
    from chat.tasks.documents import document_process_task  # it imports this module

    name = extraction.clean_name(name)
    kind = extraction.document_kind(
        name=name, data=data, max_bytes=settings.CHAT_DOCUMENT_MAX_BYTES
    )
    with transaction.atomic():
        document = Document.objects.create(
            user_id=user_id,
            name=name,
            kind=kind,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
        )
        document_id = str(document.pk)
        transaction.on_commit(lambda: document_process_task.enqueue(document_id=document_id))
    return document


def document_delete(*, user_id: int, document_id: uuid.UUID | str) -> Document:
    """Delete the user's document (and its attachments to conversations)."""
    document = document_get_for_user(user_id=user_id, document_id=document_id)
    document.delete()
    return document


def documents_read_again(*, document_ids: list[uuid.UUID]) -> int:
    """Reset these documents to pending and queue them again (admin, after a fix or outage)."""
    from chat.tasks.documents import document_process_task  # it imports this module

    with transaction.atomic():
        count = Document.objects.filter(pk__in=document_ids).update(
            status=Document.Status.PENDING, progress=0, error_message="", processed_at=None
        )
        for document_id in document_ids:
            transaction.on_commit(
                lambda document_id=str(document_id): document_process_task.enqueue(
                    document_id=document_id
                )
            )
    return count


def _fail(document_id: uuid.UUID | str, reason: str) -> None:
    Document.objects.filter(pk=document_id).exclude(status__in=FINISHED).update(
        status=Document.Status.FAILED, error_message=reason, processed_at=timezone.now()
    )


def _progress_reporter(document_id: uuid.UUID | str) -> Callable[[int, int], None]:
    last = [-1]

    def report(done: int, total: int) -> None:
        percent = min(99, done * 100 // max(total, 1))
        if percent != last[0]:  # one write per percent at most
            last[0] = percent
            Document.objects.filter(pk=document_id, status=Document.Status.PROCESSING).update(
                progress=percent
            )

    return report


def document_process(*, document_id: uuid.UUID | str, attempt: int = 1) -> str:
    """Extract, cap and count a document's text; mark it ready, or failed with the reason."""
    claimed = (
        Document.objects.filter(pk=document_id)
        .exclude(status__in=FINISHED)
        .update(status=Document.Status.PROCESSING, progress=0)
    )
    if not claimed:
        return "skipped"  # deleted, or finished by an earlier run: nothing to do again
    if attempt > 1 and attempt >= settings.TASKS_MAX_ATTEMPTS:
        _fail(
            document_id,
            f"Processing this file was cut short {attempt - 1} times (it may be too large or "
            "damaged). Try a smaller file.",
        )
        return Document.Status.FAILED
    kind, data = Document.objects.values_list("kind", "data").get(pk=document_id)
    try:
        extracted = extraction.text_extract(
            kind=kind,
            data=bytes(data),
            max_chars=settings.CHAT_DOCUMENT_MAX_CHARS,
            on_page=_progress_reporter(document_id),
        )
        # Claude's tokenizer is not public: its count is the conservative local estimate.
        counts = {
            "o200k_base": tokens.count_text(extracted.text, "o200k_base"),
            "cl100k_base": tokens.count_text(extracted.text, "cl100k_base"),
            "claude": tokens.claude_text_tokens(extracted.text),
        }
    except errors.ChatError as exc:
        _fail(document_id, exc.message)
        return Document.Status.FAILED
    except Exception:
        logger.exception("document %s: processing failed", document_id)
        _fail(document_id, "This file could not be processed because of an error on our side.")
        return Document.Status.FAILED
    Document.objects.filter(pk=document_id, status=Document.Status.PROCESSING).update(
        status=Document.Status.READY,
        progress=100,
        text=extracted.text,
        chars=len(extracted.text),
        pages=extracted.pages,
        token_counts=counts,
        error_message="",
        processed_at=timezone.now(),
    )
    return Document.Status.READY
