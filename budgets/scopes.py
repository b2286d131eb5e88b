"""The budgets one call counts against, and how each is named in Redis.

    user:42            the person's own daily budget (their plan and quota)
    member:7:42        user 42's cap within team 7 (and whether they still belong to it)
    team:7             team 7's shared daily budget
    provider:anthropic the organisation's daily cap for a provider (counted even without a cap)

A call billed to no team counts against user and provider; one billed to a team against all
four. The reserve script checks them in this order, so a refusal names the first that binds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ScopeKind = Literal["user", "member", "team", "provider"]
_PATTERN = re.compile(
    r"^(?:user:(?P<user>\d+)|member:(?P<mteam>\d+):(?P<muser>\d+)|team:(?P<team>\d+)"
    r"|provider:(?P<provider>[a-z0-9_-]{1,32}))$"
)


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    user_id: int | None = None
    team_id: int | None = None
    provider: str = ""

    @property
    def key(self) -> str:
        if self.kind == "user":
            return f"user:{self.user_id}"
        if self.kind == "member":
            return f"member:{self.team_id}:{self.user_id}"
        if self.kind == "team":
            return f"team:{self.team_id}"
        return f"provider:{self.provider}"

    def __str__(self) -> str:
        return self.key


def user_scope(user_id: int) -> Scope:
    return Scope("user", user_id=user_id)


def team_scope(team_id: int) -> Scope:
    return Scope("team", team_id=team_id)


def member_scope(team_id: int, user_id: int) -> Scope:
    return Scope("member", user_id=user_id, team_id=team_id)


def provider_scope(provider: str) -> Scope:
    return Scope("provider", provider=provider)


def scopes_for_call(*, user_id: int, team_id: int | None, provider: str) -> tuple[Scope, ...]:
    """Every budget a call counts against, in the order the reserve script checks them."""
    if team_id is None:
        return (user_scope(user_id), provider_scope(provider))
    return (
        user_scope(user_id),
        member_scope(team_id, user_id),
        team_scope(team_id),
        provider_scope(provider),
    )


def parse_scope(key: str) -> Scope:
    """The Scope a key such as 'team:7' names; ValueError if it names none."""
    match = _PATTERN.match(key)
    if match is None:
        raise ValueError(f"{key!r} is not a budget scope.")
    if match["user"]:
        return user_scope(int(match["user"]))
    if match["mteam"]:
        return member_scope(int(match["mteam"]), int(match["muser"]))
    if match["team"]:
        return team_scope(int(match["team"]))
    return provider_scope(match["provider"])
