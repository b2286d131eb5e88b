from __future__ import annotations

from django.urls import path

from budgets import views

app_name = "budgets"
urlpatterns = [
    path("usage/", views.usage_page, name="usage"),
    path("usage/teams/<int:team_id>/", views.team_usage_page, name="team_usage"),
]
