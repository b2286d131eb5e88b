"""The user's own usage page, and a team's usage page for its team admins."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from budgets.models import Team
from budgets.reports import team_usage_report, usage_report
from budgets.scopes import team_scope
from budgets.selectors import can_view_team_usage, team_admin_teams
from budgets.services import budget_state_sync, scope_usage_sync


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    """Today's budget meter, and the last 30 days by model with a chart."""
    context = usage_report(user_id=request.user.pk)
    context["budget"] = budget_state_sync(user_id=request.user.pk)
    context["admin_of_teams"] = team_admin_teams(user_id=request.user.pk)
    return render(request, "budgets/usage.html", context)


@login_required
@require_GET
def team_usage_page(request: HttpRequest, team_id: int) -> HttpResponse:
    """A team's meter, today by member, and 30 days by day, model and member.

    Only the team's team admins and those who may read the whole ledger (superusers, staff
    with the usage-record permission) may see it; anyone else gets a 404, so the page does
    not even confirm that the team exists.
    """
    if not can_view_team_usage(user=request.user, team_id=team_id):
        raise Http404("No such team.")
    team = get_object_or_404(Team, pk=team_id)
    context = team_usage_report(team_id=team.pk)
    context["team"] = team
    context["usage"] = scope_usage_sync(scope=team_scope(team.pk))
    context["warn_at"] = settings.BUDGETS_WARN_AT
    return render(request, "budgets/team_usage.html", context)
