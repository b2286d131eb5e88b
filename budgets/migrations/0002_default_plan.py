"""Create the default plan that every new user gets."""

from django.db import migrations


def create_default_plan(apps, schema_editor):
    Plan = apps.get_model("budgets", "Plan")
    if Plan.objects.filter(is_default=True).exists():
        return
    plan, _ = Plan.objects.get_or_create(
        name="Default",
        defaults={
            "daily_tokens": 200_000,
            "daily_cost_usd": None,
            "requests_per_minute": 20,
            "concurrent_streams": 2,
            "max_output_tokens": 4096,
            "allowed_models": "",
        },
    )
    plan.is_default = True
    plan.save(update_fields=["is_default"])


def remove_default_plan(apps, schema_editor):
    Plan = apps.get_model("budgets", "Plan")
    Plan.objects.filter(name="Default", quotas__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("budgets", "0001_initial")]

    operations = [migrations.RunPython(create_default_plan, remove_default_plan)]
