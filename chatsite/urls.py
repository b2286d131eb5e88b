from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chat.api import openai_views
from chatsite import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("v1/models", openai_views.models, name="api_models"),
    path("v1/models/<path:model_id>", openai_views.model_detail, name="api_model"),
    path("v1/chat/completions", openai_views.chat_completions, name="api_chat_completions"),
    path("", include("budgets.urls")),
    path("", include("chat.urls")),
]
