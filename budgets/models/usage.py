"""The durable usage ledger: one row per provider call or cache hit."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from budgets.models.plans import MICROS_PER_USD


class UsageRecord(models.Model):
    """The durable ledger: one row per provider call or cache hit."""

    class Outcome(models.TextChoices):
        FINISHED = "finished"
        STOPPED = "stopped"
        FAILED = "failed"
        INTERRUPTED = "interrupted"
        CACHE_HIT = "cache_hit", "cache hit"
        REFUSED = "refused"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="usage_records",
        help_text="Kept (empty) when the user is deleted, so the ledger still adds up.",
    )
    conversation_id = models.UUIDField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    model = models.CharField(max_length=100)
    provider = models.CharField(max_length=32)
    input_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cost_micros = models.PositiveBigIntegerField(default=0, help_text="Micro-dollars.")
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    cache_hit = models.BooleanField(default=False)
    batch = models.BooleanField(
        default=False, help_text="Run in a provider batch, at the batch price (half price)."
    )
    team = models.ForeignKey(
        "budgets.Team",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="usage_records",
        help_text="The team this call was billed to; empty: the person's own budget only.",
    )
    request_id = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="budgets_usage_user_day"),
            models.Index(fields=["team", "created_at"], name="budgets_usage_team_day"),
            models.Index(fields=["provider", "created_at"], name="budgets_usage_provider_day"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.total_tokens} tokens ({self.outcome})"

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.cache_write_tokens
            + self.cache_read_tokens
            + self.output_tokens
        )

    @property
    def cost_usd(self) -> Decimal:
        return Decimal(self.cost_micros) / MICROS_PER_USD


class UsageDashboard(UsageRecord):
    """A proxy so the admin index links to the usage dashboard."""

    class Meta:
        proxy = True
        verbose_name = "usage dashboard"
        verbose_name_plural = "usage dashboard"
