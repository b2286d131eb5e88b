"""Alerts to admins when a budget crosses a threshold: one row per scope, day and threshold."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Alert(models.Model):
    """A budget crossed `threshold` percent of its daily limit; who was told, and how."""

    class Kind(models.TextChoices):
        USER = "user"
        TEAM = "team"
        MEMBER = "member", "member's cap"
        PROVIDER = "provider", "provider cap"

    class Delivery(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        SKIPPED = "skipped", "not configured"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    scope = models.CharField(max_length=64, help_text="The budget scope, e.g. team:7.")
    day = models.DateField()
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the daily limit.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="budget_alerts",
    )
    team = models.ForeignKey(
        "budgets.Team", on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    provider = models.CharField(max_length=32, blank=True)
    subject = models.CharField(max_length=200)
    message = models.TextField()
    used_tokens = models.PositiveBigIntegerField(default=0)
    limit_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    used_cost_micros = models.PositiveBigIntegerField(default=0)
    limit_cost_micros = models.PositiveBigIntegerField(null=True, blank=True)
    email_status = models.CharField(
        max_length=16, choices=Delivery.choices, default=Delivery.PENDING
    )
    email_recipients = models.TextField(blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    webhook_status = models.CharField(
        max_length=16, choices=Delivery.choices, default=Delivery.PENDING
    )
    webhook_attempts = models.PositiveSmallIntegerField(default=0)
    webhook_sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "day", "threshold"], name="budgets_one_alert_per_threshold_day"
            )
        ]

    def __str__(self) -> str:
        return self.subject
