from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from chat.rendering import render_markdown

register = template.Library()


@register.filter
def markdown(text: str) -> SafeString:
    """Render a message's text as sanitised markdown."""
    return render_markdown(text or "")
