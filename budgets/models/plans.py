"""Plans and quotas: a person's own daily limits, and the validators other limits share."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

MAX_DAILY_TOKENS = 10**12
MAX_DAILY_COST_USD = Decimal("1000000")
MAX_RPM = 100_000
MAX_CONCURRENT = 1_000
MAX_OUTPUT_TOKENS = 1_000_000
MICROS_PER_USD = 1_000_000

daily_tokens_validators = [
    MinValueValidator(0, "Daily tokens can't be negative."),
    MaxValueValidator(MAX_DAILY_TOKENS, "Daily tokens can't exceed 1,000,000,000,000."),
]
daily_cost_validators = [
    MinValueValidator(Decimal("0"), "A daily cost can't be negative."),
    MaxValueValidator(MAX_DAILY_COST_USD, "A daily cost can't exceed $1,000,000."),
]
rpm_validators = [
    MinValueValidator(1, "Requests per minute must be at least 1."),
    MaxValueValidator(MAX_RPM, "Requests per minute can't exceed 100,000."),
]
concurrent_validators = [
    MinValueValidator(1, "Concurrent streams must be at least 1."),
    MaxValueValidator(MAX_CONCURRENT, "Concurrent streams can't exceed 1,000."),
]
max_output_validators = [
    MinValueValidator(1, "Max output tokens must be at least 1."),
    MaxValueValidator(MAX_OUTPUT_TOKENS, "Max output tokens can't exceed 1,000,000."),
]


def parse_model_list(text: str) -> list[str]:
    """Model ids from text, one per line or comma-separated, without blanks or repeats."""
    seen: list[str] = []
    for item in text.replace(",", "\n").splitlines():
        item = item.strip()
        if item and item not in seen:
            seen.append(item)
    return seen


def validate_model_list(text: str) -> None:
    for item in parse_model_list(text):
        if len(item) > 100 or any(ch.isspace() or ch == "|" for ch in item):
            raise ValidationError(f"{item[:40]!r} is not a model id.")


class Plan(models.Model):
    """Daily limits that quotas point at; exactly one plan is the default."""

    name = models.CharField(max_length=64, unique=True)
    daily_tokens = models.PositiveBigIntegerField(
        default=100_000,
        validators=daily_tokens_validators,
        help_text="Input plus output tokens a user may use per day.",
    )
    daily_cost_usd = models.DecimalField(
        "daily cost (USD)",
        max_digits=13,
        decimal_places=6,
        null=True,
        blank=True,
        validators=daily_cost_validators,
        help_text="Empty: no cost limit, only the token limit.",
    )
    requests_per_minute = models.PositiveIntegerField(default=20, validators=rpm_validators)
    concurrent_streams = models.PositiveIntegerField(default=2, validators=concurrent_validators)
    max_output_tokens = models.PositiveIntegerField(default=4096, validators=max_output_validators)
    allowed_models = models.TextField(
        blank=True,
        validators=[validate_model_list],
        help_text="Model ids, one per line. Empty allows every model.",
    )
    is_default = models.BooleanField(
        default=False, help_text="New users get the default plan. Exactly one plan is the default."
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="budgets_one_default_plan"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def allowed_model_list(self) -> list[str]:
        return parse_model_list(self.allowed_models)

    def validate_constraints(self, exclude=None) -> None:
        # The single-default constraint is kept by the plan_save service, which moves the
        # flag from the old default in the same transaction; don't refuse the form for it.
        exclude = set(exclude or ()) | {"is_default"}
        super().validate_constraints(exclude=exclude)

    def clean(self) -> None:
        if self.pk and not self.is_default:
            was_default = Plan.objects.filter(pk=self.pk, is_default=True).exists()
            if was_default:
                raise ValidationError(
                    {"is_default": "There must be a default plan: make another plan the default."}
                )


class Quota(models.Model):
    """A user's plan, per-user overrides (empty: the plan's) and extra tokens for one day."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_quota"
    )
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="quotas")
    daily_tokens = models.PositiveBigIntegerField(
        null=True, blank=True, validators=daily_tokens_validators
    )
    daily_cost_usd = models.DecimalField(
        "daily cost (USD)",
        max_digits=13,
        decimal_places=6,
        null=True,
        blank=True,
        validators=daily_cost_validators,
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=rpm_validators
    )
    concurrent_streams = models.PositiveIntegerField(
        null=True, blank=True, validators=concurrent_validators
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=max_output_validators
    )
    extra_tokens = models.PositiveBigIntegerField(
        default=0,
        validators=daily_tokens_validators,
        help_text="Tokens granted on top of the daily limit, for the day below only.",
    )
    extra_tokens_day = models.DateField(null=True, blank=True)
    usage_reset_at = models.DateTimeField(
        null=True, blank=True, help_text="Use before this instant no longer counts for that day."
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota of {self.user}"
