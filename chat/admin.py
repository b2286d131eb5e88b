"""Admin for the chat app: model prices."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from chat.models import ModelPrice
from chat.providers import pricing, specs


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
