"""`manage.py set_team_quota TEAM [--daily-tokens N] [--daily-cost USD|none]
[--member USERNAME --member-cap N|none]`: change a team's daily budget and a member's cap.

'none' as --daily-cost removes the team's cost limit (only tokens count); as --member-cap it
removes the member's cap (they may use the whole team budget). Everything is checked before
anything is saved: a refusal changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from budgets.management.arguments import usd_amount, whole_number
from budgets.models import Team, TeamMembership
from budgets.services.teams import UNSET, team_set_quota

NONE = "none"


def _whole(text: str) -> int:
    return whole_number(text, unit=" of tokens")


def _cap(text: str) -> int | None:
    return None if text.lower() == NONE else _whole(text)


def _usd(text: str) -> Decimal | None:
    return None if text.lower() == NONE else usd_amount(text)


def _problems(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
    return " ".join(exc.messages)


def _describe(team: Team) -> str:
    cost = "none" if team.daily_cost_usd is None else f"${team.daily_cost_usd:,.2f}"
    lines = [f"{team.name}: {team.daily_tokens:,} tokens/day; cost limit {cost}/day."]
    for m in TeamMembership.objects.select_related("user").filter(team=team):
        cap = "no cap" if m.daily_tokens_cap is None else f"cap {m.daily_tokens_cap:,} tokens/day"
        role = "team admin" if m.is_team_admin else "member"
        lines.append(f"  {m.user.get_username()} ({role}): {cap}")
    return "\n".join(lines)


class Command(BaseCommand):
    help = (
        "Set a team's daily token budget and cost limit, and one member's daily cap within it "
        "('none' clears the cost limit or the cap). Prints the team's limits afterwards."
    )

    def add_arguments(self, parser):
        parser.add_argument("team", help="team name")
        parser.add_argument("--daily-tokens", type=_whole, default=UNSET, help="tokens per day")
        parser.add_argument(
            "--daily-cost", type=_usd, default=UNSET, help="US dollars per day, or 'none'"
        )
        parser.add_argument("--member", help="username of a member of the team")
        parser.add_argument(
            "--member-cap", type=_cap, default=UNSET, help="the member's tokens per day, or 'none'"
        )

    def handle(self, *args, **options):
        team = Team.objects.filter(name=options["team"]).first()
        if team is None:
            names = ", ".join(Team.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"No team named {options['team']!r}. Teams: {names}.")
        username, cap = options["member"], options["member_cap"]
        if (username is None) != (cap is UNSET):
            raise CommandError("--member and --member-cap go together: give both or neither.")
        member = None
        if username is not None:
            member = get_user_model().objects.filter(username=username).first()
            if member is None:
                raise CommandError(f"No user named {username!r}.")
        try:
            team, _ = team_set_quota(
                team=team,
                daily_tokens=options["daily_tokens"],
                daily_cost_usd=options["daily_cost"],
                member=member,
                member_cap=cap,
            )
        except ValidationError as exc:
            raise CommandError(f"Refused, nothing changed: {_problems(exc)}") from None
        self.stdout.write(_describe(team))
