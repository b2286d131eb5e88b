"""Django admin for teams, their members and the organisation's provider caps.

A team and its members are saved together through budgets.services.teams (which checks the
whole roster and drops the cached limits in Redis), so the inline's rules are the service's.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

from budgets.models import ProviderCap, Team, TeamMembership
from budgets.scopes import provider_scope, team_scope
from budgets.services import ScopeUsage, scope_usage_sync
from budgets.services.teams import (
    provider_cap_delete,
    provider_cap_save,
    roster_problems,
    team_delete,
    team_save,
)


def usage_text(usage: ScopeUsage) -> str:
    """Today's use of a scope in one line, for list columns."""
    if not usage.available:
        return "unavailable (Redis unreachable)"
    text = f"{usage.tokens_used:,}"
    if usage.tokens_limit is not None:
        text += f" of {usage.tokens_limit:,}"
    text += f" tokens · ${usage.cost_used_usd:,.2f}"
    if usage.cost_limit_usd is not None:
        text += f" of ${usage.cost_limit_usd:,.2f}"
    return f"{text} ({usage.percent}%)"


class TeamMembershipFormSet(BaseInlineFormSet):
    """The roster as it will be after the save: at least one member, no cap above the budget.

    The team here is the parent form's edited instance, so a budget changed in the same save
    is the one the caps are checked against (also when the team is being created).
    """

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [
            form.instance
            for form in self.forms
            if form.has_changed() or form.instance.pk is not None
            if not (self.can_delete and self._should_delete_form(form))
        ]
        problems = roster_problems(budget=self.instance.daily_tokens, memberships=kept)
        if problems:
            raise ValidationError(problems)


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    formset = TeamMembershipFormSet
    fields = ("user", "role", "daily_tokens_cap", "joined_at")
    readonly_fields = ("joined_at",)
    autocomplete_fields = ("user",)
    extra = 1


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "daily_tokens", "daily_cost_usd", "member_count", "today_use", "usage")
    search_fields = ("name", "memberships__user__username")
    readonly_fields = ("created_at", "updated_at")
    fields = (
        "name",
        "daily_tokens",
        "daily_cost_usd",
        "allowed_models",
        "created_at",
        "updated_at",
    )
    inlines = (TeamMembershipInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Team) -> int:
        return obj.member_count

    @admin.display(description="today's use")
    def today_use(self, obj: Team) -> str:
        return usage_text(scope_usage_sync(scope=team_scope(obj.pk)))

    @admin.display(description="usage page")
    def usage(self, obj: Team) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("budgets:team_usage", args=[obj.pk]), "by member"
        )

    def save_model(self, request, obj, form, change):
        """Saved with its members in save_related: the service checks the whole roster."""

    def save_related(self, request, form, formsets, change):
        form.save_m2m()
        memberships, removed = [], []
        for formset in formsets:
            if formset.model is TeamMembership:
                memberships += formset.save(commit=False)
                removed += formset.deleted_objects
        team_save(team=form.instance, memberships=memberships, removed=removed)

    def delete_model(self, request, obj):
        team_delete(team=obj)

    def delete_queryset(self, request, queryset):
        for team in queryset:
            team_delete(team=team)


@admin.register(ProviderCap)
class ProviderCapAdmin(admin.ModelAdmin):
    list_display = ("provider", "daily_cost_usd", "today_spend", "updated_at")
    readonly_fields = ("updated_at",)

    @admin.display(description="today's spend (share of the cap)")
    def today_spend(self, obj: ProviderCap) -> str:
        usage = scope_usage_sync(scope=provider_scope(obj.provider))
        if not usage.available:
            return "unavailable (Redis unreachable)"
        return f"${usage.cost_used_usd:,.2f} ({usage.percent}%) · {usage.tokens_used:,} tokens"

    def save_model(self, request, obj, form, change):
        provider_cap_save(cap=obj)

    def delete_model(self, request, obj):
        provider_cap_delete(cap=obj)

    def delete_queryset(self, request, queryset):
        for cap in queryset:
            provider_cap_delete(cap=cap)
