"""Conversations and their messages."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """A thread of messages owned by one user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=100, blank=True)
    system_prompt = models.TextField(blank=True)
    documents = models.ManyToManyField(
        "Document", through="ConversationDocument", related_name="conversations", blank=True
    )
    billing_team = models.ForeignKey(
        "budgets.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text="The team this conversation's calls are billed to; empty: personal budget.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["user", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or "New conversation"


class Message(models.Model):
    """One user or assistant message; an assistant message grows while it streams."""

    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming", "Streaming"
        DONE = "done", "Done"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        INTERRUPTED = "interrupted", "Interrupted"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DONE)
    model = models.CharField(max_length=100, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    # Normalised usage of the provider call that produced this message.
    input_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.PositiveBigIntegerField(default=0, help_text="US dollars x 1,000,000")
    retries = models.PositiveSmallIntegerField(default=0)
    cache_hit = models.BooleanField(default=False, help_text="Answered from the response cache")
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class ModelPrice(models.Model):
    """An admin's price for one model, overriding the catalog's published default.

    US dollars per million tokens; a blank field keeps the catalog's price. Read through an
    in-process snapshot (chat/providers/pricing.py), never per token.
    """

    model_id = models.CharField("model", max_length=100, unique=True)
    input = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    output = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    cache_write_5m = models.DecimalField(
        "cache write (5 min)", max_digits=12, decimal_places=6, null=True, blank=True
    )
    cache_write_1h = models.DecimalField(
        "cache write (1 hour)", max_digits=12, decimal_places=6, null=True, blank=True
    )
    cache_read = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    note = models.CharField(max_length=200, blank=True, help_text="Source and date of the price.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model_id"]

    def __str__(self) -> str:
        return self.model_id


class ApiKey(models.Model):
    """A key a program uses to call the APIs as its user; only a hash of it is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=16, help_text="The start of the key, to recognise it in lists."
    )
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Document(models.Model):
    """A file a user uploaded; a task extracts its text so conversations can attach it."""

    class Kind(models.TextChoices):
        TEXT = "text", "Plain text"
        MARKDOWN = "markdown", "Markdown"
        PDF = "pdf", "PDF"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        PROCESSING = "processing", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents"
    )
    name = models.CharField(max_length=255, help_text="The uploaded file's name.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    # The upload itself, kept in the database so any worker on any machine can read it.
    data = models.BinaryField(editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # 0-100 while processing (pages done of pages, for a PDF).
    progress = models.PositiveSmallIntegerField(default=0)
    error_message = models.TextField(blank=True)
    text = models.TextField(blank=True)
    pages = models.PositiveIntegerField(null=True, blank=True)
    chars = models.PositiveIntegerField(default=0)
    # Tokens of the text per tokenizer: {"o200k_base": n, "cl100k_base": n, "claude": n}.
    token_counts = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return self.name


class ConversationDocument(models.Model):
    """A document attached to a conversation: its text goes into the cached system prompt."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE)
    document = models.ForeignKey(Document, on_delete=models.CASCADE)
    attached_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["attached_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "document"], name="unique_conversation_document"
            )
        ]

    def __str__(self) -> str:
        return f"{self.document} in {self.conversation}"


class BatchJob(models.Model):
    """Bulk work over documents ("summarise these"), run by a task: one item per document."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        CANCELING = "canceling", "Canceling"
        ENDED = "ended", "Finished"
        CANCELED = "canceled", "Canceled"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batch_jobs"
    )
    model = models.CharField(max_length=100)
    provider = models.CharField(max_length=16)
    billing_team = models.ForeignKey(
        "budgets.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="batch_jobs",
        help_text="The team the job's items are billed to; empty: personal budget.",
    )
    instruction = models.TextField()
    max_tokens = models.PositiveIntegerField(help_text="The reply cap of each item.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Tallies of the items, refreshed by the task after every step.
    item_count = models.PositiveIntegerField(default=0)
    succeeded_count = models.PositiveIntegerField(default=0)
    errored_count = models.PositiveIntegerField(default=0)
    refused_count = models.PositiveIntegerField(default=0)
    canceled_count = models.PositiveIntegerField(default=0)
    cost_micros = models.PositiveBigIntegerField(default=0, help_text="US dollars x 1,000,000")
    list_price_micros = models.PositiveBigIntegerField(
        default=0, help_text="What the same usage costs at standard (non-batch) prices."
    )
    provider_batch_id = models.CharField(max_length=100, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # A run holds the job until then, so two workers never advance it at once.
    locked_until = models.DateTimeField(null=True, blank=True, editable=False)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.instruction[:40]} ({self.item_count} documents)"


class BatchItem(models.Model):
    """One document of a batch job: its prompt, result, usage and budget reservation."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RESERVED = "reserved", "Budget held"
        SUBMITTED = "submitted", "Processing"
        SUCCEEDED = "succeeded", "Done"
        ERRORED = "errored", "Failed"
        EXPIRED = "expired", "Expired"
        CANCELED = "canceled", "Canceled"
        REFUSED = "refused", "Refused"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="items")
    document = models.ForeignKey(
        Document, on_delete=models.SET_NULL, null=True, blank=True, related_name="batch_items"
    )
    document_name = models.CharField(max_length=255)
    custom_id = models.CharField(max_length=64, help_text="The item's id in the provider batch.")
    position = models.PositiveIntegerField(default=0)
    input_text = models.TextField(help_text="The document text as sent.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    output_text = models.TextField(blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    cache_write_tokens = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_micros = models.PositiveBigIntegerField(default=0, help_text="US dollars x 1,000,000")
    # The budget reservation held for this item (budgets' Reservation, as JSON) until settled.
    reservation = models.JSONField(null=True, blank=True, editable=False)
    settled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the budget was settled or released."
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "custom_id"], name="unique_batch_custom_id")
        ]
        indexes = [models.Index(fields=["job", "status"])]

    def __str__(self) -> str:
        return f"{self.document_name} ({self.status})"
