"""`manage.py set_quota USERNAME [--plan NAME] [--daily-tokens N] [--daily-cost USD] [--rpm N]
[--concurrent N]`: change a user's plan and limits; 'plan' as a value clears an override."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from budgets.management.arguments import usd_amount, whole_number
from budgets.models import Plan
from budgets.selectors import limits_for_quota
from budgets.services.quotas import quota_update

INHERIT = "plan"
NOT_GIVEN = object()  # tells an option left out from one cleared with 'plan'


def _whole(text: str) -> int | None:
    return None if text == INHERIT else whole_number(text)


def _usd(text: str) -> Decimal | None:
    return None if text == INHERIT else usd_amount(text)


class Command(BaseCommand):
    help = "Set a user's budget plan and per-user limits ('plan' as a value: use the plan's)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--plan", help="plan name")
        parser.add_argument("--daily-tokens", type=_whole, default=NOT_GIVEN, help="tokens per day")
        parser.add_argument("--daily-cost", type=_usd, default=NOT_GIVEN, help="US dollars per day")
        parser.add_argument("--rpm", type=_whole, default=NOT_GIVEN, help="requests per minute")
        parser.add_argument(
            "--concurrent", type=_whole, default=NOT_GIVEN, help="concurrent streams"
        )

    def handle(self, *args, **options):
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        plan = None
        if options["plan"]:
            plan = Plan.objects.filter(name=options["plan"]).first()
            if plan is None:
                names = ", ".join(Plan.objects.values_list("name", flat=True))
                raise CommandError(f"No plan named {options['plan']!r}. Plans: {names}.")
        overrides = {}
        for option, field in (
            ("daily_tokens", "daily_tokens"),
            ("daily_cost", "daily_cost_usd"),
            ("rpm", "requests_per_minute"),
            ("concurrent", "concurrent_streams"),
        ):
            if options[option] is not NOT_GIVEN:
                overrides[field] = options[option]
        try:
            quota = quota_update(user_id=user.pk, plan=plan, **overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items()
            )
            raise CommandError(f"Refused: {problems}") from None
        limits = limits_for_quota(quota)
        cost = (
            "none"
            if limits.daily_cost_micros is None
            else f"${limits.daily_cost_micros / 1e6:,.2f}"
        )
        self.stdout.write(
            f"{user.username}: plan {limits.plan_name}; {limits.daily_tokens:,} tokens/day; "
            f"cost limit {cost}/day; {limits.requests_per_minute:,} requests/min; "
            f"{limits.concurrent_streams:,} concurrent streams; "
            f"max output {limits.max_output_tokens:,} tokens."
        )
