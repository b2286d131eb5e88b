"""The user's own usage page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from budgets.reports import usage_report
from budgets.services import budget_state_sync


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    """Today's budget meter, and the last 30 days by model with a chart."""
    context = usage_report(user_id=request.user.pk)
    context["budget"] = budget_state_sync(user_id=request.user.pk)
    return render(request, "budgets/usage.html", context)
