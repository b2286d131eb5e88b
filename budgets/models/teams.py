"""Teams that share a daily budget, their members, and the organisation's cap per provider.

A call billed to a team counts against the person's own budget, the team's, the member's
cap within the team (when one is set) and the cap of the call's provider, all at once.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from budgets.models.plans import (
    MICROS_PER_USD,
    daily_cost_validators,
    daily_tokens_validators,
    parse_model_list,
    validate_model_list,
)

PROVIDER_CHOICES = [("anthropic", "Anthropic"), ("openai", "OpenAI")]


class Team(models.Model):
    """A group whose members' calls, when billed to it, share one daily budget."""

    name = models.CharField(max_length=100, unique=True)
    daily_tokens = models.PositiveBigIntegerField(
        default=1_000_000,
        validators=daily_tokens_validators,
        help_text="Input plus output tokens the whole team may use per day.",
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
    allowed_models = models.TextField(
        blank=True,
        validators=[validate_model_list],
        help_text="Model ids, one per line. Empty: the members' own plans decide.",
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="budgets.TeamMembership", related_name="teams"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def allowed_model_list(self) -> list[str]:
        return parse_model_list(self.allowed_models)

    @property
    def daily_cost_micros(self) -> int | None:
        if self.daily_cost_usd is None:
            return None
        return int(self.daily_cost_usd * MICROS_PER_USD)


class TeamMembership(models.Model):
    """A user in a team, as a member or a team admin, with an optional cap of their own."""

    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        ADMIN = "admin", "Team admin"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    daily_tokens_cap = models.PositiveBigIntegerField(
        "member's daily token cap",
        null=True,
        blank=True,
        validators=daily_tokens_validators,
        help_text="The most this member may use of the team's budget per day. Empty: no cap.",
    )
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["joined_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="budgets_one_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"

    def clean(self) -> None:
        team = self.team if self.team_id else None
        cap = self.daily_tokens_cap
        if team is not None and cap is not None and cap > team.daily_tokens:
            raise ValidationError(
                {
                    "daily_tokens_cap": (
                        f"A member's cap ({cap:,} tokens) can't exceed the team's daily budget "
                        f"({team.daily_tokens:,} tokens)."
                    )
                }
            )

    @property
    def is_team_admin(self) -> bool:
        return self.role == self.Role.ADMIN


class ProviderCap(models.Model):
    """The organisation's daily spending ceiling for one provider, for everyone together."""

    provider = models.CharField(max_length=32, choices=PROVIDER_CHOICES, unique=True)
    daily_cost_usd = models.DecimalField(
        "daily cost cap (USD)",
        max_digits=13,
        decimal_places=6,
        validators=[
            MinValueValidator(Decimal("0.01"), "A provider's daily cap must be at least $0.01."),
            MaxValueValidator(Decimal("1000000"), "A daily cost can't exceed $1,000,000."),
        ],
        help_text="When today's spend with this provider reaches it, its calls are refused "
        "for everyone until the budget day resets.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider"]
        verbose_name = "provider cap"

    def __str__(self) -> str:
        return f"{self.get_provider_display()}: ${self.daily_cost_usd:,.2f} a day"

    @property
    def daily_cost_micros(self) -> int:
        return int(self.daily_cost_usd * MICROS_PER_USD)
