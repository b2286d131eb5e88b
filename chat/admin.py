"""Admin for the chat app: model prices and API keys."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import ApiKey, BatchItem, BatchJob, Document, ModelPrice
from chat.providers import pricing, specs
from chat.services import api_keys, documents


class ModelPriceForm(forms.ModelForm):
    model_id = forms.ChoiceField(choices=[(m.id, f"{m.label} ({m.id})") for m in specs.MODELS])

    class Meta:
        model = ModelPrice
        fields = (
            "model_id",
            "input",
            "output",
            "cache_write_5m",
            "cache_write_1h",
            "cache_read",
            "note",
        )


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices per million tokens; blank fields keep the catalog's published price."""

    form = ModelPriceForm
    list_display = (
        "model_id",
        "input",
        "output",
        "cache_write_5m",
        "cache_write_1h",
        "cache_read",
        "catalog_price",
        "updated_at",
    )
    search_fields = ("model_id", "note")
    readonly_fields = ("catalog_price", "updated_at")

    @admin.display(description="Catalog default (in / out / write 5m / write 1h / read)")
    def catalog_price(self, obj: ModelPrice) -> str:
        model = specs.spec(obj.model_id)
        if model is None or model.prices is None:
            return "none published"
        p = model.prices
        return " / ".join(
            str(v.normalize())
            for v in (p.input, p.output, p.cache_write_5m, p.cache_write_1h, p.cache_read)
        )

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        pricing.prices_invalidate()

    def delete_model(self, request, obj) -> None:
        super().delete_model(request, obj)
        pricing.prices_invalidate()

    def delete_queryset(self, request, queryset) -> None:
        super().delete_queryset(request, queryset)
        pricing.prices_invalidate()


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Users' API keys: only a hash is stored, so keys are made on the settings page or with
    `manage.py create_api_key`, and here only listed and revoked."""

    list_display = ("name", "user", "shown_prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("name", "prefix", "user__username", "user__email")
    list_select_related = ("user",)
    readonly_fields = ("user", "prefix", "created_at", "last_used_at", "revoked_at")
    fields = ("name", *readonly_fields)
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="Key", ordering="prefix")
    def shown_prefix(self, obj: ApiKey) -> str:
        return f"{api_keys.KEY_PREFIX}{obj.prefix}…"

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        live = list(queryset.filter(revoked_at__isnull=True).values_list("pk", flat=True))
        for key_id in live:
            api_keys.api_key_revoke(user_id=None, key_id=key_id)
        self.message_user(request, f"Revoked {len(live)} key(s).", messages.SUCCESS)


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    """Uploaded documents; their bytes and text stay out of lists (they can be megabytes)."""

    list_display = (
        "name",
        "user",
        "kind",
        "status",
        "progress",
        "size_bytes",
        "chars",
        "created_at",
    )
    list_filter = ("status", "kind", "created_at")
    search_fields = ("name", "user__username", "sha256", "error_message")
    list_select_related = ("user",)
    date_hierarchy = "created_at"
    exclude = ("data", "text")
    readonly_fields = (
        "user", "name", "kind", "size_bytes", "sha256", "status", "progress", "error_message",
        "pages", "chars", "token_counts", "created_at", "processed_at", "text_start",
    )  # fmt: skip
    actions = ("read_again",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Document]:
        return super().get_queryset(request).defer("data", "text")

    @admin.display(description="Text (start)")
    def text_start(self, obj: Document) -> str:
        return Document.objects.values_list("text", flat=True).get(pk=obj.pk)[:2000]

    @admin.action(description="Read the selected documents again")
    def read_again(self, request: HttpRequest, queryset: QuerySet[Document]) -> None:
        count = documents.documents_read_again(
            document_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(
            request, f"{count} document(s) queued to be read again.", messages.SUCCESS
        )


class BatchItemInline(admin.TabularInline):
    """A job's items: results, usage and cost are the task's, read only."""

    model = BatchItem
    extra = 0
    can_delete = False
    show_change_link = False
    fields = (
        "position",
        "document_name",
        "status",
        "input_tokens",
        "cache_write_tokens",
        "cache_read_tokens",
        "output_tokens",
        "cost_micros",
        "settled_at",
        "error_message",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    """Batch jobs with their items; the task owns every field, so all are read only."""

    list_display = (
        "created_at",
        "user",
        "model",
        "status",
        "item_count",
        "succeeded_count",
        "errored_count",
        "refused_count",
        "cost_micros",
    )
    list_filter = ("status", "provider", "model")
    search_fields = ("user__username", "instruction", "provider_batch_id")
    date_hierarchy = "created_at"
    inlines = (BatchItemInline,)
    readonly_fields = tuple(
        f.name for f in BatchJob._meta.get_fields() if f.concrete and not f.many_to_many
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
