"""Values the budget services hand back: a Reservation and a BudgetState."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from budgets.models import MICROS_PER_USD


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens and micro-dollars held for one provider call until it is settled or released."""

    request_id: str
    user_id: int
    model: str
    provider: str
    day: str
    scopes: tuple[str, ...]  # budgets/scopes.py keys, in the reserve script's order
    prompt_tokens: int
    requested_max_tokens: int
    max_tokens: int
    reserved_tokens: int
    reserved_cost_micros: int
    expires_at: dt.datetime | None
    shrunk: bool = False
    notice: str | None = None
    unmetered: bool = False
    team_id: int | None = None  # the team the call is billed to, if any


class _CostInUsd:
    """Dollars for pages, from the micro-dollars a state holds."""

    __slots__ = ()
    cost_used_micros: int
    cost_limit_micros: int | None

    @property
    def cost_used_usd(self) -> Decimal:
        return Decimal(self.cost_used_micros) / MICROS_PER_USD

    @property
    def cost_limit_usd(self) -> Decimal | None:
        if self.cost_limit_micros is None:
            return None
        return Decimal(self.cost_limit_micros) / MICROS_PER_USD


@dataclass(frozen=True, slots=True)
class BudgetState(_CostInUsd):
    """Today's use against the limits, for the meter. `available` is False if Redis is down."""

    user_id: int
    day: str
    tokens_used: int
    tokens_limit: int
    cost_used_micros: int
    cost_limit_micros: int | None
    resets_at: dt.datetime
    reserved_tokens: int = 0
    overshoot_tokens: int = 0
    overshoot_cost_micros: int = 0
    available: bool = True

    @property
    def tokens_fraction(self) -> float:
        if self.tokens_limit <= 0:
            return 1.0
        return min(1.0, self.tokens_used / self.tokens_limit)

    @property
    def cost_fraction(self) -> float:
        if self.cost_limit_micros is None:
            return 0.0
        if self.cost_limit_micros <= 0:
            return 1.0
        return min(1.0, self.cost_used_micros / self.cost_limit_micros)

    @property
    def fraction(self) -> float:
        """The larger of the token and cost fractions, 0..1."""
        return max(self.tokens_fraction, self.cost_fraction)

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)

    @property
    def warn_at(self) -> float:
        return settings.BUDGETS_WARN_AT

    @property
    def warn(self) -> bool:
        return self.available and self.fraction >= settings.BUDGETS_WARN_AT

    @property
    def exhausted(self) -> bool:
        if not self.available:
            return False
        over_cost = (
            self.cost_limit_micros is not None and self.cost_used_micros >= self.cost_limit_micros
        )
        return self.tokens_used >= self.tokens_limit or over_cost

    @property
    def tokens_left(self) -> int:
        return max(0, self.tokens_limit - self.tokens_used)

    @property
    def resets_at_iso(self) -> str:
        return self.resets_at.astimezone(dt.UTC).isoformat()

    @property
    def resets_at_utc_text(self) -> str:
        return self.resets_at.astimezone(dt.UTC).strftime("%H:%M UTC")


@dataclass(frozen=True, slots=True)
class ScopeUsage(_CostInUsd):
    """Today's use of any budget scope (a team, a member's cap, a provider) against its limits.

    A limit of None means there is none. `available` is False if Redis is down.
    """

    scope: str
    label: str
    day: str
    tokens_used: int
    tokens_limit: int | None
    cost_used_micros: int
    cost_limit_micros: int | None
    reserved_tokens: int
    resets_at: dt.datetime
    available: bool = True

    @property
    def fraction(self) -> float:
        """The larger of the token and cost fractions, 0..1 (0 with no limit)."""
        parts = [0.0]
        for used, limit in (
            (self.tokens_used, self.tokens_limit),
            (self.cost_used_micros, self.cost_limit_micros),
        ):
            if limit is not None:
                parts.append(1.0 if limit <= 0 else min(1.0, used / limit))
        return max(parts)

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)
