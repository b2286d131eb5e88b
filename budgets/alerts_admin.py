"""Django admin for alert history (see budgets/services/alerts.py and budgets/tasks.py).

Read-only: alerts are facts about a day's use and how admins were told. The one action,
"Deliver again", re-enqueues delivery of alerts whose e-mail or webhook failed (or never left).
"""

from __future__ import annotations

from django.contrib import admin, messages

from budgets.admin_base import ReadOnlyAdminMixin
from budgets.models import Alert
from budgets.tasks import alerts_resend


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "kind",
        "subject",
        "threshold",
        "day",
        "email_status",
        "webhook_status",
        "webhook_attempts",
    ]
    list_filter = ["kind", "day", "threshold", "email_status", "webhook_status"]
    search_fields = ["subject", "scope"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "user"]
    actions = ["resend"]
    fields = [
        ("kind", "scope", "day", "threshold"),
        ("user", "team", "provider"),
        "subject",
        "message",
        ("used_tokens", "limit_tokens"),
        ("used_cost_micros", "limit_cost_micros"),
        ("email_status", "email_sent_at"),
        "email_recipients",
        ("webhook_status", "webhook_attempts", "webhook_sent_at"),
        "last_error",
        "created_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        return self.fields_flat()

    def fields_flat(self) -> list[str]:
        flat: list[str] = []
        for entry in self.fields:
            flat += list(entry) if isinstance(entry, tuple) else [entry]
        return flat

    @admin.action(description="Deliver the selected alerts again (failed or not yet sent)")
    def resend(self, request, queryset):
        count = alerts_resend(alert_ids=list(queryset.values_list("pk", flat=True)))
        if count:
            self.message_user(request, f"Delivery of {count} alert(s) enqueued again.")
        else:
            self.message_user(
                request,
                "Nothing to deliver again: the selected alerts were sent or skipped.",
                messages.WARNING,
            )
