"""Operators' changes to teams, their members and provider caps, and the cached limits they drop.

A team is saved together with its roster: the rules (at least one member; no member's cap
above the team's daily budget) are about the whole team as it will be after the save, so
they are checked on that, not on one row at a time. After the transaction commits, the cached
limits of every scope that changed are deleted from Redis, so the next reservation reloads
them from the database; a Redis error is only logged, since cached limits expire by
themselves after BUDGETS_LIMITS_CACHE_SECONDS.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction

from budgets import keys
from budgets.models import ProviderCap, Team, TeamMembership
from budgets.scopes import Scope, member_scope, provider_scope, team_scope
from budgets.store import STORE_ERRORS, sync_store

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

logger = logging.getLogger(__name__)
UNSET: object = object()  # tells "leave as it is" from None ("clear it")
NO_MEMBERS = (
    "A team needs at least one member: add someone (usually its team admin) before saving, "
    "or delete the team."
)


def scope_limits_invalidate(*, scopes: Iterable[Scope]) -> None:
    """Drop the cached limits of some scopes so the next reservation reloads them."""
    names = sorted({keys.limits_key(scope) for scope in scopes})
    if not names:
        return
    try:
        sync_store().client.delete(*names)
    except STORE_ERRORS as exc:  # cached limits expire by themselves
        logger.warning("budgets: could not invalidate cached limits of %s: %s", names, exc)


def _invalidate_now_and_after_commit(scopes: list[Scope]) -> None:
    """Drop cached limits at once and again when the transaction commits.

    At once, so code that runs inside a test's transaction (or reads right away) sees the
    change; after commit, because a reservation between the two could cache the values the
    database still showed it before the commit.
    """
    scope_limits_invalidate(scopes=scopes)
    transaction.on_commit(lambda: scope_limits_invalidate(scopes=scopes))


def _username(membership: TeamMembership) -> str:
    return membership.user.get_username() if membership.user_id else "a member"


def _cap_problem(membership: TeamMembership, budget: int) -> str:
    return (
        f"{_username(membership)}'s cap ({membership.daily_tokens_cap:,} tokens) is above the "
        f"team's daily budget ({budget:,} tokens): lower the cap or raise the budget."
    )


def roster_problems(*, budget: int | None, memberships: Sequence[TeamMembership]) -> list[str]:
    """What is wrong with a team's members as they will be: none, or caps above the budget."""
    if not memberships:
        return [NO_MEMBERS]
    if budget is None:
        return []
    return [
        _cap_problem(m, budget)
        for m in memberships
        if m.daily_tokens_cap is not None and m.daily_tokens_cap > budget
    ]


def _final_roster(
    team: Team, changed: Sequence[TeamMembership], removed: Sequence[TeamMembership]
) -> list[TeamMembership]:
    """The team's memberships after the save: the stored ones, changed, added or removed."""
    gone = {m.pk for m in removed if m.pk is not None}
    edited = {m.pk: m for m in changed if m.pk is not None}
    roster: list[TeamMembership] = []
    if team.pk is not None:
        for stored in TeamMembership.objects.select_related("user").filter(team_id=team.pk):
            if stored.pk not in gone:
                roster.append(edited.get(stored.pk, stored))
    roster += [m for m in changed if m.pk is None]
    return roster


def team_save(
    *,
    team: Team,
    memberships: Sequence[TeamMembership] = (),
    removed: Sequence[TeamMembership] = (),
) -> Team:
    """Validate and save a team with its added or changed memberships and removed ones.

    Refused with a ValidationError (nothing saved) when the team would have no member, or a
    member's cap would be above the team's daily budget (naming the member).
    """
    team.full_clean()
    for membership in memberships:
        membership.team = team
        # The team field is checked by the roster rules below; the team may not exist yet.
        try:
            membership.full_clean(exclude={"team"}, validate_unique=False)
        except ValidationError as exc:
            raise ValidationError([f"{_username(membership)}: {m}" for m in exc.messages]) from None
    roster = _final_roster(team, memberships, removed)
    problems = roster_problems(budget=team.daily_tokens, memberships=roster)
    if problems:
        raise ValidationError(problems)
    users = [m.user_id for m in roster]
    if len(users) != len(set(users)):
        raise ValidationError("Each person can belong to a team only once.")
    affected = {m.user_id for m in (*roster, *removed)}
    with transaction.atomic():
        team.save()
        for membership in removed:
            if membership.pk is not None:
                membership.delete()
        for membership in memberships:
            membership.team = team
            membership.save()
    _invalidate_team(team.pk, affected)
    return team


def _invalidate_team(team_id: int, user_ids: Iterable[int]) -> None:
    # The member scopes carry the team's name and whether the person still belongs to it.
    scopes = [team_scope(team_id), *(member_scope(team_id, uid) for uid in user_ids)]
    _invalidate_now_and_after_commit(scopes)


def membership_save(*, membership: TeamMembership) -> TeamMembership:
    """Add a member to a team or change their role or cap (the cap within the team's budget)."""
    team_save(team=membership.team, memberships=[membership])
    return membership


def membership_delete(*, membership: TeamMembership) -> None:
    """Remove a member from their team; the last member can't be removed (delete the team)."""
    team_save(team=membership.team, removed=[membership])


def team_delete(*, team: Team) -> None:
    """Delete a team; its ledger rows stay, no longer billed to any team."""
    team_id = team.pk
    user_ids = list(
        TeamMembership.objects.filter(team_id=team_id).values_list("user_id", flat=True)
    )
    with transaction.atomic():
        team.delete()
    _invalidate_team(team_id, user_ids)


def team_set_quota(
    *,
    team: Team,
    daily_tokens: int | object = UNSET,
    daily_cost_usd: Decimal | object | None = UNSET,
    member: AbstractBaseUser | None = None,
    member_cap: int | object | None = UNSET,
) -> tuple[Team, TeamMembership | None]:
    """Change a team's daily budget and cost limit, and one member's cap within it.

    `member` is a user; None for daily_cost_usd or member_cap clears that limit. Both the
    team and the member's cap are checked together, so lowering the budget and the cap in
    one call works. Refused with a ValidationError, nothing changed.
    """
    if (member is None) != (member_cap is UNSET):
        raise ValidationError("Give a member and their cap together, or neither.")
    team = Team.objects.get(pk=team.pk)  # the stored values, not a caller's edited copy
    if daily_tokens is not UNSET:
        team.daily_tokens = daily_tokens
    if daily_cost_usd is not UNSET:
        if daily_cost_usd is not None and not isinstance(daily_cost_usd, Decimal):
            daily_cost_usd = Decimal(str(daily_cost_usd))
        team.daily_cost_usd = daily_cost_usd
    membership = None
    if member is not None:
        membership = (
            TeamMembership.objects.select_related("user")
            .filter(team_id=team.pk, user_id=member.pk)
            .first()
        )
        if membership is None:
            raise ValidationError(
                f"{member.get_username()} is not a member of {team.name}: add them in the "
                "admin first."
            )
        membership.daily_tokens_cap = member_cap
    team_save(team=team, memberships=[membership] if membership else ())
    return team, membership


def provider_cap_save(*, cap: ProviderCap) -> ProviderCap:
    """Validate and save the organisation's daily cap for a provider."""
    cap.full_clean()
    with transaction.atomic():
        cap.save()
    _invalidate_now_and_after_commit([provider_scope(cap.provider)])
    return cap


def provider_cap_delete(*, cap: ProviderCap) -> None:
    """Remove a provider's cap: its calls are then limited only by people's and teams' budgets."""
    provider = cap.provider
    with transaction.atomic():
        cap.delete()
    _invalidate_now_and_after_commit([provider_scope(provider)])
