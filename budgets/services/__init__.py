"""Budget services: the contract the turn pipeline calls (async) and operators' actions."""

from __future__ import annotations

from budgets.errors import BudgetError, BudgetRefused, BudgetUnavailable
from budgets.services.reservations import budget_release, budget_reserve, budget_settle
from budgets.services.state import budget_state, budget_state_sync, scope_usage, scope_usage_sync
from budgets.services.types import BudgetState, Reservation, ScopeUsage
from budgets.services.usage import usage_record_create

__all__ = [
    "BudgetError",
    "BudgetRefused",
    "BudgetState",
    "BudgetUnavailable",
    "Reservation",
    "ScopeUsage",
    "budget_release",
    "budget_reserve",
    "budget_settle",
    "budget_state",
    "budget_state_sync",
    "scope_usage",
    "scope_usage_sync",
    "usage_record_create",
]
