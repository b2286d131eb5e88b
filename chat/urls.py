from __future__ import annotations

from django.urls import path

from chat import attachment_views, batch_views, document_views, views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.conversation_new, name="conversation_new"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<uuid:conversation_id>/rename/", views.conversation_rename, name="rename"),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="delete"),
    path(
        "c/<uuid:conversation_id>/system/", views.conversation_system_prompt, name="system_prompt"
    ),
    path(
        "c/<uuid:conversation_id>/billing/",
        views.conversation_billing_team,
        name="billing_team",
    ),
    path(
        "c/<uuid:conversation_id>/documents/",
        attachment_views.attachment_choices,
        name="attachment_choices",
    ),
    path(
        "c/<uuid:conversation_id>/documents/attach/",
        attachment_views.attachment_add,
        name="attachment_add",
    ),
    path(
        "c/<uuid:conversation_id>/documents/<uuid:document_id>/detach/",
        attachment_views.attachment_remove,
        name="attachment_remove",
    ),
    path("documents/", document_views.documents, name="documents"),
    path("documents/<uuid:document_id>/", document_views.document_row, name="document_row"),
    path(
        "documents/<uuid:document_id>/delete/",
        document_views.document_delete,
        name="document_delete",
    ),
    path("batches/", batch_views.batch_list, name="batches"),
    path("batches/<uuid:job_id>/", batch_views.batch_detail, name="batch"),
    path("batches/<uuid:job_id>/cancel/", batch_views.batch_cancel, name="batch_cancel"),
    path("settings/keys/", views.api_keys, name="api_keys"),
    path("settings/keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
