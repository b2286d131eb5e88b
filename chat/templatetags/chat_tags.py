from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Render a message's text as sanitised markdown."""
    return render_markdown(text or "")


@register.filter
def usd(micros: int | None) -> str:
    """Micro-dollars as a price a person reads: $0.0123, $1.20, <$0.0001."""
    if not micros:
        return "$0"
    dollars = micros / 1_000_000
    if dollars < 0.0001:
        return "<$0.0001"
    if dollars < 1:
        return f"${dollars:.4f}".rstrip("0")
    return f"${dollars:,.2f}"
