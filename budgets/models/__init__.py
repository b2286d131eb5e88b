"""The budgets app's models.

The ledger (UsageRecord) is the source of truth; Redis holds only today's counters and
live reservations and is rebuilt from it. Business rules live in services; models only
validate their own fields.
"""

from budgets.models.alerts import Alert
from budgets.models.plans import (
    MAX_CONCURRENT,
    MAX_DAILY_COST_USD,
    MAX_DAILY_TOKENS,
    MAX_OUTPUT_TOKENS,
    MAX_RPM,
    MICROS_PER_USD,
    Plan,
    Quota,
    parse_model_list,
    validate_model_list,
)
from budgets.models.teams import PROVIDER_CHOICES, ProviderCap, Team, TeamMembership
from budgets.models.usage import UsageDashboard, UsageRecord

__all__ = [
    "MAX_CONCURRENT",
    "MAX_DAILY_COST_USD",
    "MAX_DAILY_TOKENS",
    "MAX_OUTPUT_TOKENS",
    "MAX_RPM",
    "MICROS_PER_USD",
    "PROVIDER_CHOICES",
    "Alert",
    "Plan",
    "ProviderCap",
    "Quota",
    "Team",
    "TeamMembership",
    "UsageDashboard",
    "UsageRecord",
    "parse_model_list",
    "validate_model_list",
]
