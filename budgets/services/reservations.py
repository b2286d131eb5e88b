"""Reserve, settle and release budget for one provider call; read today's state.

The budget arithmetic lives in lua/reserve.lua, in one round trip: for every scope that
applies (budgets/scopes.py: the user's own, and the provider's; with a team, also the
member's cap in it and the team's) it checks the user still belongs to the team, prunes expired
reservations, checks the allowed models, the requests in the last minute and the live
streams, caps max_tokens at the plan's max output, and grants the largest reply that fits
    limit (+ extra tokens granted today) - settled today - held by live reservations - prompt
in tokens and likewise in micro-dollars. A reply smaller than asked (but at least
BUDGETS_MIN_REPLY_TOKENS) is granted and flagged `shrunk`; below that the call is refused.
When today's counters or the cached limits are missing the script says so, and they are
loaded here (the counters rebuilt from the ledger under a lock) before it runs again.
"""

from __future__ import annotations

import datetime as dt
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from budgets import keys, selectors
from budgets.days import day_key
from budgets.errors import BudgetRefused, BudgetUnavailable
from budgets.scopes import Scope, parse_scope, scopes_for_call
from budgets.services.alerts import alerts_raise
from budgets.services.counters import ATTEMPTS, prepare
from budgets.services.refusals import refusal_from_script
from budgets.services.state import state_read, unavailable_state
from budgets.services.types import BudgetState, Reservation
from budgets.store import STORE_ERRORS, async_store

logger = logging.getLogger(__name__)

MAX_PROMPT_TOKENS = 10**8
MAX_REQUEST_TOKENS = 10**7
MAX_PRICE_MICROS_PER_MTOK = 10**9  # $1,000 per million tokens
MAX_TTL_SECONDS = 86_400


def _check_int(name: str, value: object, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:,} and {high:,}, not {value:,}.")
    return value


def _check_text(name: str, value: object, *, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise ValueError(f"{name} must be non-empty text of at most {max_length} characters.")
    if any(ch.isspace() or ch == "|" for ch in value):
        raise ValueError(f"{name} must not contain spaces or '|': {value!r}.")
    return value


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


async def budget_reserve(
    *,
    user_id: int,
    model: str,
    provider: str,
    prompt_tokens: int,
    max_tokens: int,
    input_price_micros_per_mtok: int,
    output_price_micros_per_mtok: int,
    request_id: str,
    ttl_seconds: int | None = None,
    background: bool = False,
    team_id: int | None = None,
) -> Reservation:
    """Hold prompt + reply tokens and their cost for one call, or raise BudgetRefused.

    background=True is for queued work (a batch item): it is held and settled like any call,
    but is not one of the person's live streams, so the per-minute and concurrent-stream
    limits neither refuse it nor count it.

    team_id bills the call to a team too: the member's cap within it and the team's budget
    must both fit, and the user must (still) belong to it.
    """
    _check_int("user_id", user_id, low=1, high=2**63 - 1)
    if team_id is not None:
        _check_int("team_id", team_id, low=1, high=2**63 - 1)
    _check_text("model", model, max_length=100)
    _check_text("provider", provider, max_length=32)
    if not provider.replace("-", "").replace("_", "").isalnum() or provider != provider.lower():
        raise ValueError(f"provider must be a lower-case id such as 'openai', not {provider!r}.")
    _check_text("request_id", request_id, max_length=128)
    _check_int("prompt_tokens", prompt_tokens, low=1, high=MAX_PROMPT_TOKENS)
    _check_int("max_tokens", max_tokens, low=1, high=MAX_REQUEST_TOKENS)
    for name, price in (
        ("input_price_micros_per_mtok", input_price_micros_per_mtok),
        ("output_price_micros_per_mtok", output_price_micros_per_mtok),
    ):
        _check_int(name, price, low=0, high=MAX_PRICE_MICROS_PER_MTOK)
    ttl = settings.BUDGETS_RESERVATION_TTL if ttl_seconds is None else ttl_seconds
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= MAX_TTL_SECONDS:
        raise ValueError(f"ttl_seconds must be between 0 and {MAX_TTL_SECONDS}, not {ttl!r}.")

    now = timezone.now()
    day = day_key(now)
    scopes = scopes_for_call(user_id=user_id, team_id=team_id, provider=provider)
    prompt_cost = _ceil_div(prompt_tokens * input_price_micros_per_mtok, 1_000_000)
    script_keys = [keys.GEN_KEY, *(k for scope in scopes for k in keys.scope_keys(scope, day))]
    args: list[object] = [
        day,
        request_id,
        model,
        prompt_tokens,
        max_tokens,
        prompt_cost,
        output_price_micros_per_mtok,
        max(1, int(ttl * 1000)),
        keys.DAY_KEY_TTL_SECONDS,
        settings.BUDGETS_MIN_REPLY_TOKENS,
        "1" if background else "0",
        "100" if 100 in settings.ALERTS_THRESHOLDS else "",
    ]
    try:
        store = async_store()
        for _ in range(ATTEMPTS):
            result = await store.run("reserve", script_keys, args)
            if result[0] != "need":
                break
            await prepare(store, scopes=scopes, day=day, needs=result[1:])
        else:
            raise BudgetUnavailable(reason="counters could not be prepared")
    except STORE_ERRORS as exc:
        logger.warning("budgets: Redis unreachable on reserve %s: %s", request_id, exc)
        if not settings.BUDGETS_FAIL_OPEN:
            raise BudgetUnavailable(store_error=str(exc)) from exc
        return await _unmetered(
            user_id=user_id,
            model=model,
            provider=provider,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            request_id=request_id,
            day=day,
            scopes=scopes,
            team_id=team_id,
        )

    if result[0] == "error":
        raise ValueError(f"request_id {request_id!r} was already settled or released.")
    if result[0] == "refused":
        refusal = refusal_from_script(
            result, scopes=scopes, now=now, model=model, prompt=prompt_tokens
        )
        if result[8] == "1":  # the refusing budget is full: tell admins (once a day)
            await alerts_raise(scopes=scopes, crossings=[f"{result[3]}:100"], day=day)
        raise refusal
    _, granted, capped, ask_tokens, ask_cost, expires_ms, _now_ms, _dup = result
    granted, capped = int(granted), int(capped)
    shrunk = granted < capped
    notice = None
    if shrunk:
        notice = (
            f"Your daily budget is nearly used up, so this reply is limited to {granted:,} tokens."
        )
    return Reservation(
        request_id=request_id,
        user_id=user_id,
        model=model,
        provider=provider,
        day=day,
        scopes=tuple(scope.key for scope in scopes),
        team_id=team_id,
        prompt_tokens=prompt_tokens,
        requested_max_tokens=max_tokens,
        max_tokens=granted,
        reserved_tokens=int(ask_tokens),
        reserved_cost_micros=int(ask_cost),
        expires_at=dt.datetime.fromtimestamp(int(expires_ms) / 1000, tz=dt.UTC),
        shrunk=shrunk,
        notice=notice,
    )


async def _unmetered(
    *,
    user_id: int,
    model: str,
    provider: str,
    prompt_tokens: int,
    max_tokens: int,
    request_id: str,
    day: str,
    scopes: tuple[Scope, ...],
    team_id: int | None,
) -> Reservation:
    """BUDGETS_FAIL_OPEN: let the call through, still within the plan's model list and cap,
    and, billed to a team, only for its members and within the team's model list."""
    limits = await sync_to_async(selectors.limits_for_user)(user_id=user_id)
    if not limits.allows(model):
        raise BudgetRefused(
            f"Your plan doesn't include the model {model}. Choose another model.",
            code="model_not_allowed",
            limit="allowed_models",
        )
    for index, scope in enumerate(scopes):
        if scope.kind not in ("member", "team"):
            continue
        mapping = await sync_to_async(selectors.scope_limits)(scope)
        code, limit = "", ""
        if mapping.get("member") == "0":
            code, limit = "not_a_member", "team"
        elif mapping["models"] and f"|{model}|" not in str(mapping["models"]):
            code, limit = "model_not_allowed", "allowed_models"
        if code:
            result = ["refused", code, limit, str(index), "-1", "0", "0", mapping.get("label", "")]
            raise refusal_from_script(
                [str(x) for x in result], scopes=scopes, now=timezone.now(), model=model, prompt=0
            )
    granted = min(max_tokens, limits.max_output_tokens)
    return Reservation(
        request_id=request_id,
        user_id=user_id,
        model=model,
        provider=provider,
        day=day,
        scopes=tuple(scope.key for scope in scopes),
        team_id=team_id,
        prompt_tokens=prompt_tokens,
        requested_max_tokens=max_tokens,
        max_tokens=granted,
        reserved_tokens=0,
        reserved_cost_micros=0,
        expires_at=None,
        unmetered=True,
    )


def _flat_keys(reservation: Reservation) -> list[str]:
    return [k for scope in reservation.scopes for k in keys.scope_keys(scope, reservation.day)]


async def budget_settle(
    *, reservation: Reservation, tokens_used: int, cost_micros: int
) -> BudgetState:
    """Replace the reservation by actual use (once, however often called); free its slot.

    tokens_used counts every token of the call: input, cache writes, cache reads, output.
    """
    _check_int("tokens_used", tokens_used, low=0, high=MAX_PROMPT_TOKENS + MAX_REQUEST_TOKENS)
    _check_int("cost_micros", cost_micros, low=0, high=10**13)
    try:
        store = async_store()
        result = await store.run(
            "settle",
            _flat_keys(reservation),
            [
                reservation.request_id,
                tokens_used,
                cost_micros,
                keys.DAY_KEY_TTL_SECONDS,
                "1" if reservation.unmetered else "0",
                reservation.day,
                ",".join(str(t) for t in settings.ALERTS_THRESHOLDS),
            ],
        )
        if result[0] == "ok" and len(result) > 3:
            scopes = [parse_scope(key) for key in reservation.scopes]
            await alerts_raise(scopes=scopes, crossings=result[3:], day=reservation.day)
        if result[0] == "ok" and (int(result[1]) or int(result[2])):
            logger.warning(
                "budgets: %s overshot its reservation by %s tokens, %s micro-dollars",
                reservation.request_id,
                result[1],
                result[2],
            )
        return await state_read(store, user_id=reservation.user_id)
    except STORE_ERRORS as exc:
        logger.warning(
            "budgets: settle of %s not recorded in Redis (%s); the ledger keeps it and "
            "budgets_reconcile --fix repairs the counters",
            reservation.request_id,
            exc,
        )
        return unavailable_state(reservation.user_id)


async def budget_release(*, reservation: Reservation) -> None:
    """Drop a reservation without use and free its stream slot; idempotent."""
    if reservation.unmetered:
        return
    try:
        await async_store().run(
            "release", _flat_keys(reservation), [reservation.request_id, keys.DAY_KEY_TTL_SECONDS]
        )
    except STORE_ERRORS as exc:  # it expires by itself after its TTL
        logger.warning("budgets: release of %s failed (%s)", reservation.request_id, exc)
