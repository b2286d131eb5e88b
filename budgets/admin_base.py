"""What the budgets admin pages share."""

from __future__ import annotations


class ReadOnlyAdminMixin:
    """A record admins may read but not add, change or delete: the ledger, alert history,
    the dashboard. (A change page still opens, read-only, for the view permission.)"""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
