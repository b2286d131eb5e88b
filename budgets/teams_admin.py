"""Django admin for teams, their members and the organisation's provider caps."""
