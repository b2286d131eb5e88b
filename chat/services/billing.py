"""Which budget a conversation (or batch) bills: the person's own, or one of their teams.

One place checks a choice for every door: the chat page's "Bill to" select, the new-batch
form, the OpenAI-compatible API's `team` body field and the JSON websocket API's `team`. A
team is named by its id or its exact name; None (JSON null, the select's "Personal budget")
bills the person's own budget only. A person may bill only a team they belong to: anything
else is refused with a message saying which teams they can choose. Whether they still belong
when a call is made is checked again by the reserve script (a `not_a_member` refusal).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from asgiref.sync import sync_to_async
from django.conf import settings

from budgets import selectors as budget_selectors
from chat import errors

# Sent by a door when the request did not mention a team at all (not the same as null).
UNSET: Final = object()
PERSONAL_CHOICE: Final = ""  # the select's value for "Personal budget"


@dataclass(frozen=True, slots=True)
class TeamChoice:
    """A team the person may bill, as the select shows it."""

    id: int
    name: str


def billing_teams(*, user_id: int) -> list[TeamChoice]:
    """The teams the person belongs to, first joined first (the first is the default)."""
    return [
        TeamChoice(id=m.team_id, name=m.team.name)
        for m in budget_selectors.teams_of_user(user_id=user_id)
    ]


def billing_team_resolve(
    *, user_id: int, team: object, teams: list[TeamChoice] | None = None
) -> int | None:
    """The team id a door's `team` value names (None: personal), or a refusal.

    Accepts a team id (an int, or digits as a form sends them), a team's exact name, or
    None / "" for the personal budget. A wrong type is `invalid_request`; a team the person
    does not belong to (or that does not exist) is `not_a_member`, naming it.
    """
    if team is None or team == PERSONAL_CHOICE:
        return None
    if isinstance(team, bool) or not isinstance(team, int | str):
        raise errors.InvalidInput(
            "`team` must be a team id (a whole number), a team's exact name, or null for "
            "your personal budget.",
            code="invalid_request",
            param="team",
        )
    if teams is None:
        teams = billing_teams(user_id=user_id)
    for choice in teams:
        if team in (choice.id, choice.name) or (isinstance(team, str) and team == str(choice.id)):
            return choice.id
    named = f"#{team}" if isinstance(team, int) or team.isdigit() else f"“{team[:100]}”"
    yours = ", ".join(choice.name for choice in teams)
    choose = (
        f"Choose one of your teams ({yours}) or your personal budget."
        if yours
        else "You belong to no team, so only your personal budget can be billed."
    )
    raise errors.InvalidInput(
        f"You're not a member of team {named}, so it can't be billed. {choose}",
        code="not_a_member",
        param="team",
    )


def billing_team_for_new(*, user_id: int, team: object = UNSET) -> int | None:
    """The team a new conversation or batch bills: the one asked for, else the first team."""
    if team is UNSET:
        return budget_selectors.default_team_id(user_id=user_id)
    return billing_team_resolve(user_id=user_id, team=team)


# The API door's hot path: each process keeps a person's teams for CHAT_API_KEY_CACHE_SECONDS
# (as it keeps their API key), so a request costs no query before its first byte. A stale
# entry is harmless: the reserve script checks membership on every call.
_teams_cache: dict[int, tuple[list[TeamChoice], float]] = {}
CACHE_MAX_ENTRIES = 10_000


async def abilling_team_for_new(*, user_id: int, team: object = UNSET) -> int | None:
    """billing_team_for_new for the APIs: the person's teams from a short per-process cache.

    A team named but not in the cached list is looked up again (a team joined a moment ago).
    """
    hit = _teams_cache.get(user_id)
    if hit is not None and hit[1] > time.monotonic():
        teams = hit[0]
        if team is UNSET:
            return teams[0].id if teams else None
        if (
            team is None
            or team == PERSONAL_CHOICE
            or any(team in (c.id, c.name, str(c.id)) for c in teams)
        ):
            return billing_team_resolve(user_id=user_id, team=team, teams=teams)
    teams = await sync_to_async(billing_teams)(user_id=user_id)
    if len(_teams_cache) >= CACHE_MAX_ENTRIES:
        _teams_cache.clear()
    _teams_cache[user_id] = (teams, time.monotonic() + settings.CHAT_API_KEY_CACHE_SECONDS)
    if team is UNSET:
        return teams[0].id if teams else None
    return billing_team_resolve(user_id=user_id, team=team, teams=teams)
