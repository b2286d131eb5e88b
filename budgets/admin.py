"""Django admin: plans, quotas (also inline on users), the usage ledger and a dashboard."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.template.response import TemplateResponse

from budgets.admin_base import ReadOnlyAdminMixin
from budgets.forms import GrantExtraTokensForm
from budgets.models import MICROS_PER_USD, Plan, Quota, UsageDashboard, UsageRecord
from budgets.reports import teams_today_report, top_users_report, usage_report
from budgets.selectors import TOTAL_TOKENS, limits_for_quota
from budgets.services import budget_state_sync
from budgets.services.quotas import (
    limits_invalidate,
    plan_save,
    quota_grant_extra_tokens,
    quota_reset_today,
    quota_save,
)
from budgets.store import STORE_ERRORS

User = get_user_model()


def _today_text(user_id: int) -> str:
    state = budget_state_sync(user_id=user_id)
    if not state.available:
        return "unavailable (Redis unreachable)"
    text = f"{state.tokens_used:,} of {state.tokens_limit:,} tokens · ${state.cost_used_usd:,.2f}"
    if state.cost_limit_usd is not None:
        text += f" of ${state.cost_limit_usd:,.2f}"
    return text


def _grant_extra_tokens(modeladmin, request, queryset, user_ids: list[int]):
    form = GrantExtraTokensForm(
        request.POST if "apply" in request.POST else None,
        initial={"tokens": settings.BUDGETS_GRANT_TOKENS},
    )
    if form.is_valid():
        tokens = form.cleaned_data["tokens"]
        count = quota_grant_extra_tokens(user_ids=user_ids, tokens=tokens)
        modeladmin.message_user(
            request, f"Granted {tokens:,} extra tokens today to {count} user(s)."
        )
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Grant extra tokens today",
        "form": form,
        "queryset": queryset,
        "opts": modeladmin.model._meta,
        "action_name": "grant_extra_tokens",
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/budgets/grant_extra_tokens.html", context)


def _reset_today(modeladmin, request, user_ids: list[int]) -> None:
    try:
        count = quota_reset_today(user_ids=user_ids)
    except STORE_ERRORS as exc:
        modeladmin.message_user(
            request, f"Redis is unreachable; nothing was reset ({exc}).", messages.ERROR
        )
        return
    modeladmin.message_user(request, f"Reset today's use of {count} user(s).")


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "is_default",
        "daily_tokens",
        "daily_cost_usd",
        "requests_per_minute",
        "concurrent_streams",
        "max_output_tokens",
        "users",
    )
    search_fields = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(user_count=Count("quotas"))

    @admin.display(ordering="user_count")
    def users(self, obj: Plan) -> int:
        return obj.user_count

    def save_model(self, request, obj, form, change):
        plan_save(plan=obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.is_default:
            return False
        return super().has_delete_permission(request, obj)


class QuotaInline(admin.StackedInline):
    model = Quota
    can_delete = False
    max_num = 1
    extra = 0
    verbose_name_plural = "budget quota"
    fields = (
        "plan",
        "today_use",
        "daily_tokens",
        "daily_cost_usd",
        "requests_per_minute",
        "concurrent_streams",
        "max_output_tokens",
        "extra_tokens",
        "extra_tokens_day",
    )
    readonly_fields = ("today_use",)

    @admin.display(description="today's use")
    def today_use(self, obj: Quota) -> str:
        return _today_text(obj.user_id) if obj.pk else "—"


@admin.action(description="Grant extra tokens today")
def grant_extra_tokens(modeladmin, request, queryset):
    user_ids = list(queryset.values_list("user_id" if queryset.model is Quota else "pk", flat=True))
    return _grant_extra_tokens(modeladmin, request, queryset, user_ids)


@admin.action(description="Reset today's use")
def reset_today_use(modeladmin, request, queryset):
    user_ids = list(queryset.values_list("user_id" if queryset.model is Quota else "pk", flat=True))
    _reset_today(modeladmin, request, user_ids)


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ("user", "plan", "daily_token_limit", "today_use", "extra_tokens", "updated_at")
    list_filter = ("plan",)
    search_fields = ("user__username", "user__email")
    list_select_related = ("user", "plan")
    autocomplete_fields = ("user",)
    readonly_fields = ("usage_reset_at", "updated_at")
    actions = (grant_extra_tokens, reset_today_use)

    @admin.display(description="daily tokens")
    def daily_token_limit(self, obj: Quota) -> str:
        return f"{limits_for_quota(obj).daily_tokens:,}"

    @admin.display(description="today's use")
    def today_use(self, obj: Quota) -> str:
        return _today_text(obj.user_id)

    def save_model(self, request, obj, form, change):
        quota_save(quota=obj)


_base_user_admin = (
    type(admin.site.get_model_admin(User)) if admin.site.is_registered(User) else admin.ModelAdmin
)
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class UserAdmin(_base_user_admin):
    """The site's user admin, with the budget quota inline and the budget actions."""

    inlines = (*_base_user_admin.inlines, QuotaInline)
    actions = (*(_base_user_admin.actions or ()), grant_extra_tokens, reset_today_use)

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        if formset.model is Quota:
            limits_invalidate(user_ids=[form.instance.pk])


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The ledger: read-only, with totals over the filtered rows."""

    date_hierarchy = "created_at"
    list_display = (
        "created_at",
        "user",
        "team",
        "model",
        "outcome",
        "cache_hit",
        "batch",
        "tokens",
        "cost",
        "time_to_first_token_ms",
        "duration_ms",
        "retries",
    )
    list_filter = (
        ("user", admin.RelatedOnlyFieldListFilter),
        ("team", admin.RelatedOnlyFieldListFilter),
        "model",
        "provider",
        "outcome",
        "cache_hit",
        "batch",
    )
    search_fields = ("request_id", "user__username", "model", "=conversation_id")
    list_select_related = ("user", "team")
    readonly_fields = [f.name for f in UsageRecord._meta.fields]

    @admin.display(description="tokens")
    def tokens(self, obj: UsageRecord) -> str:
        return f"{obj.total_tokens:,}"

    @admin.display(description="cost (USD)", ordering="cost_micros")
    def cost(self, obj: UsageRecord) -> str:
        return f"{obj.cost_usd:.6f}"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        changelist = context.get("cl")
        if changelist is not None:
            sums = changelist.queryset.aggregate(
                tokens=Sum(TOTAL_TOKENS), cost=Sum("cost_micros"), calls=Count("pk")
            )
            context["totals"] = {
                "calls": sums["calls"] or 0,
                "tokens": sums["tokens"] or 0,
                "cost_usd": (sums["cost"] or 0) / MICROS_PER_USD,
            }
        return response


@admin.register(UsageDashboard)
class UsageDashboardAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A page, not a table: charts of the last 30 days, today's top users, teams and providers."""

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.has_perm("budgets.view_usagerecord")

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            **usage_report(user_id=None),
            **top_users_report(),
            **teams_today_report(),
            "warn_at": settings.BUDGETS_WARN_AT,
            "title": "Usage dashboard",
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/budgets/dashboard.html", context)


# Admin modules of their own: teams and provider caps, and the alert history.
from budgets import alerts_admin, teams_admin  # noqa: E402, F401
