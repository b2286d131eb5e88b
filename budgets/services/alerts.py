"""Alerts when a budget crosses a threshold (placeholder until the alerts work lands)."""

from __future__ import annotations

from collections.abc import Sequence

from budgets.scopes import Scope


async def alerts_raise(*, scopes: Sequence[Scope], crossings: Sequence[str], day: str) -> None:
    """Record and send one alert per crossing '<scope index>:<percent>'; never raises."""
    return None
