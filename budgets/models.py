"""Plans, quotas and the durable usage ledger (see the budgets issue)."""

from __future__ import annotations
