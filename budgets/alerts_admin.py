"""Django admin for alert history (see budgets/services/alerts.py)."""
