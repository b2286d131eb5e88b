from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chatsite import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("", include("budgets.urls")),
    path("", include("chat.urls")),
]
