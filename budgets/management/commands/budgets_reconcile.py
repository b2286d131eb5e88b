"""`manage.py budgets_reconcile [--fix]`: compare today's Redis counters with the ledger, for
people's budgets, teams, members' caps and providers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from budgets.services.reconcile import budgets_reconcile
from budgets.store import STORE_ERRORS


class Command(BaseCommand):
    help = (
        "Compare today's budget counters in Redis with the usage ledger; --fix makes Redis agree. "
        "Exits with status 1 when differences remain."
    )

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="repair Redis from the ledger")

    def handle(self, *args, fix: bool = False, **options):
        try:
            drifts = budgets_reconcile(fix=fix)
        except STORE_ERRORS as exc:
            raise CommandError(f"Redis is unreachable: {exc}") from None
        if not drifts:
            self.stdout.write(self.style.SUCCESS("Redis agrees with the ledger for today."))
            return
        for d in drifts:
            redis_side = (
                "missing" if d.missing else f"{d.redis_tokens:,} tokens, {d.redis_cost_micros:,} µ$"
            )
            self.stdout.write(
                f"{d.label} ({d.scope}): Redis {redis_side}; "
                f"ledger {d.ledger_tokens:,} tokens, {d.ledger_cost_micros:,} µ$"
                + (" -> fixed" if fix else "")
            )
        users = sum(d.is_user for d in drifts)
        counts = f"{users} user(s) and {len(drifts) - users} team, member or provider budget(s)"
        if fix:
            self.stdout.write(self.style.SUCCESS(f"Fixed {counts}."))
        else:
            raise CommandError(f"{counts} differ; run with --fix to repair.")
