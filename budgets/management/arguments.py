"""Argument parsers shared by the budget commands: each refuses a bad value with a message
that says what was expected. A command maps its own "clear this" word (e.g. 'none') first."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.management.base import CommandError


def whole_number(text: str, *, unit: str = "") -> int:
    """'50000', '50_000' or '50,000'."""
    try:
        return int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise CommandError(f"{text!r} is not a whole number{unit}.") from None


def usd_amount(text: str) -> Decimal:
    """'2.50', '$2.50' or '1,000'."""
    try:
        value = Decimal(text.lstrip("$").replace(",", ""))
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise CommandError(f"{text!r} is not an amount of US dollars (e.g. 2.50).")
    return value
