"""Batch jobs: one instruction run over many of the user's documents, in the background.

`batch_job_create` validates everything a person can get wrong (the model, the plan, the
documents, their size) before storing anything, stores the job and one item per document in
one transaction, and enqueues the task (chat/tasks/batches.py) once that commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from budgets.selectors import limits_for_user
from chat import errors
from chat.models import BatchItem, BatchJob, Document
from chat.providers import catalog, tokens
from chat.providers.base import ChatMessage, ChatRequest
from chat.providers.specs import ModelInfo
from chat.services import billing

DEFAULT_INSTRUCTION = "Summarise this document."
INSTRUCTION_MAX_CHARS = 4000
SYSTEM_PROMPT = (
    "You are working through a batch of documents. Each request holds one instruction and one "
    "document; follow the instruction for that document alone."
)
# Role framing and the document's tags, on top of the counted texts.
PROMPT_OVERHEAD_TOKENS = 64


def item_request(
    *, model: str, instruction: str, name: str, text: str, max_tokens: int
) -> ChatRequest:
    """The provider request of one item: the instruction, then the document."""
    content = f'{instruction}\n\n<document name="{name}">\n{text}\n</document>'
    return ChatRequest(
        model=model,
        system=SYSTEM_PROMPT,
        messages=(ChatMessage("user", content),),
        max_tokens=max_tokens,
    )


def _instruction(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidInput(
            "Write what to do with each document, for example “Summarise this document.”",
            code="message_empty",
        )
    text = value.strip()
    if len(text) > INSTRUCTION_MAX_CHARS:
        raise errors.InvalidInput(
            f"The instruction is {len(text):,} characters long; the most is "
            f"{INSTRUCTION_MAX_CHARS:,}.",
            code="message_too_long",
        )
    return text


def _model(*, user_id: int, model_id: str) -> ModelInfo:
    model, _ = catalog.resolve(model_id)
    if not limits_for_user(user_id=user_id).allows(model.id):
        raise errors.Refused(
            f"Your plan doesn't include {model.label}. Choose another model.",
            code="model_not_allowed",
        )
    return model


def _documents(*, user_id: int, document_ids: Sequence[object]) -> list[Document]:
    ids: list[uuid.UUID] = []
    for raw in document_ids:
        try:
            value = raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))
        except (ValueError, TypeError, AttributeError):
            raise errors.NotFound("One of those documents does not exist.") from None
        if value not in ids:
            ids.append(value)
    if not ids:
        raise errors.InvalidInput("Pick at least one document.")
    limit = settings.CHAT_BATCH_MAX_DOCUMENTS
    if len(ids) > limit:
        raise errors.InvalidInput(
            f"A batch takes at most {limit} documents; you picked {len(ids)}. "
            "Split them into several batches."
        )
    try:
        owned = Document.objects.filter(user_id=user_id, id__in=ids).defer("data")
        found = {d.id: d for d in owned}
    except ValidationError:
        found = {}
    if len(found) != len(ids):
        # Another user's document looks exactly like a missing one.
        raise errors.NotFound("One of those documents does not exist.")
    documents = [found[i] for i in ids]
    for document in documents:
        if document.status == Document.Status.FAILED:
            raise errors.InvalidInput(
                f"“{document.name}” could not be read, so a batch cannot use it; "
                "pick documents that are ready."
            )
        if document.status != Document.Status.READY:
            raise errors.InvalidInput(
                f"“{document.name}” is still being read; wait until it is ready, or leave it out."
            )
        if not document.text.strip():
            raise errors.InvalidInput(f"“{document.name}” has no text to work on.")
    return documents


def _document_tokens(model: ModelInfo, document: Document) -> int:
    key = "claude" if model.provider == "anthropic" else model.encoding
    counted = (document.token_counts or {}).get(key)
    if isinstance(counted, int) and counted > 0:
        return counted
    if model.provider == "anthropic":
        return tokens.claude_text_tokens(document.text)
    return tokens.count_text(document.text, model.encoding)


def _check_fits(
    model: ModelInfo, documents: list[Document], instruction: str, max_tokens: int
) -> None:
    room = model.context_window - max_tokens - PROMPT_OVERHEAD_TOKENS
    room -= tokens.count_text(SYSTEM_PROMPT + instruction)
    for document in documents:
        needed = _document_tokens(model, document)
        if needed > room:
            raise errors.InvalidInput(
                f"“{document.name}” is too long for {model.label}: about {needed:,} tokens, "
                f"and the model reads at most {room:,} besides the instruction and the reply.",
                code="context_too_long",
            )


def batch_job_create(
    *,
    user_id: int,
    model: str,
    document_ids: Sequence[object],
    instruction: str,
    team: object = billing.UNSET,
) -> BatchJob:
    """Validate, store the job and its items, and enqueue its task once committed.

    `team` is what the form asked to bill (chat.services.billing); unset: the first team.
    """
    team_id = billing.billing_team_for_new(user_id=user_id, team=team)
    text = _instruction(instruction)
    info = _model(user_id=user_id, model_id=model)
    documents = _documents(user_id=user_id, document_ids=document_ids)
    plan_cap = limits_for_user(user_id=user_id).max_output_tokens
    max_tokens = max(1, min(settings.CHAT_DEFAULT_MAX_TOKENS, info.max_output, plan_cap))
    _check_fits(info, documents, text, max_tokens)
    with transaction.atomic():
        job = BatchJob.objects.create(
            user_id=user_id,
            model=info.id,
            provider=info.provider,
            instruction=text,
            max_tokens=max_tokens,
            item_count=len(documents),
            billing_team_id=team_id,
        )
        items = []
        for position, document in enumerate(documents):
            item_id = uuid.uuid4()
            items.append(
                BatchItem(
                    id=item_id,
                    job=job,
                    document=document,
                    document_name=document.name,
                    custom_id=f"item-{item_id.hex}",
                    position=position,
                    input_text=document.text,
                )
            )
        BatchItem.objects.bulk_create(items)
        transaction.on_commit(lambda: _enqueue(job.id))
    return job


def _enqueue(job_id: uuid.UUID) -> None:
    # Imported here: the task module imports this one.
    from chat.tasks.batches import batch_job_run

    batch_job_run.enqueue(str(job_id))


def batch_job_get_for_user(*, user_id: int, job_id: uuid.UUID | str) -> BatchJob:
    """The user's batch job, or NotFound (never another user's)."""
    try:
        return BatchJob.objects.get(pk=job_id, user_id=user_id)
    except (BatchJob.DoesNotExist, ValidationError, ValueError):
        raise errors.NotFound("That batch does not exist.") from None


FINISHED = (BatchJob.Status.ENDED, BatchJob.Status.CANCELED, BatchJob.Status.FAILED)


def batch_job_cancel(*, user_id: int, job_id: uuid.UUID | str) -> BatchJob:
    """Stop a job: at once if it has not started, else its task cancels what has not run."""
    with transaction.atomic():
        job = batch_job_get_for_user(user_id=user_id, job_id=job_id)
        job = BatchJob.objects.select_for_update().get(pk=job.pk)
        if job.status in FINISHED:
            raise errors.InvalidInput("That batch has already finished.")
        now = timezone.now()
        untouched = (
            job.status == BatchJob.Status.QUEUED
            and (job.locked_until is None or job.locked_until <= now)
            and not job.items.exclude(status=BatchItem.Status.PENDING).exists()
        )
        job.cancel_requested_at = job.cancel_requested_at or now
        if untouched:
            # No run has started: nothing is reserved or sent, so it ends here. Its queued
            # task finds the job finished and does nothing.
            job.items.update(
                status=BatchItem.Status.CANCELED,
                error_message="Canceled before it ran.",
                finished_at=now,
                settled_at=now,
            )
            job.status, job.finished_at = BatchJob.Status.CANCELED, now
            job.canceled_count = job.item_count
        else:
            job.status = BatchJob.Status.CANCELING
        job.save()
    return job
