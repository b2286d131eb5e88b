from __future__ import annotations

from django import forms

from budgets.models import MAX_DAILY_TOKENS


class GrantExtraTokensForm(forms.Form):
    """The admin's intermediate page for 'grant extra tokens today'."""

    tokens = forms.IntegerField(
        min_value=1,
        max_value=MAX_DAILY_TOKENS,
        label="Extra tokens for today",
        help_text="Added to each selected user's daily limit, for today only.",
    )
