"""Document tasks: extract an upload's text and count its tokens (chat/services/documents.py)."""

from __future__ import annotations

from django_tasks import TaskContext, task

from chat.services import documents


@task(queue_name="documents", takes_context=True)
def document_process_task(context: TaskContext, document_id: str) -> str:
    """Process one document; idempotent (a finished or deleted document is left alone)."""
    return documents.document_process(document_id=document_id, attempt=context.attempt)
