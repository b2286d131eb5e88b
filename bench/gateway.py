"""Gateway overhead: the sandbox called directly, through our OpenAI-compatible door, and
through LiteLLM's proxy, with the same streaming workload, side by side from one run.

    .venv/bin/python bench/gateway.py [--concurrency 1,10,100] [--streams 20,100,200]
        [--runs 2] [--tokens 40] [--ttft-ms 50] [--tps 400] [--litellm PATH] [--json out.json]

It starts, and stops at the end: a throw-away SQLite database under var/ (migrated), the
embedded Redis unless REDIS_URL is set, the sandbox (`python -m sandbox`, paced), our service
(one Daphne process, DEBUG=false, a user whose plan allows everything and an API key: auth,
budgets, the rate limit and the ledger all on), and LiteLLM's proxy (one worker, a master key,
no database) from its own venv (bench/README.md says how to install it; without it that
column is left out). Every request is the same streamed Chat Completions call
(`sandbox-reply:N`, usage included, a unique message so no cache answers it), sent by the
same client code: httpx2 reading the raw SSE bytes, parsing events only until the first
text. TTFT is from sending the request to reading the first non-empty content delta; total
to the end of the body. "added" is a path's percentile minus the direct path's in the same
run and concurrency. CPU is user+system time of each process over a level, in % of one core;
the load generator is this process (time.process_time over wall time).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py would shadow the standard library's queue module (redis imports it), and
# Python puts this script's folder first on sys.path: the repository root goes there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx2  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402

from chatsite.embedded_redis import EmbeddedRedis  # noqa: E402

MODEL = "gpt-5-mini"
SATURATED = 90.0  # % of one core: the load generator is part of what a row measures
START_TIMEOUT = 180.0  # seconds; LiteLLM's proxy takes 15-50 s to start on this machine
# Uvicorn skips access logging when its logger is above INFO (Daphne logs none either).
QUIET_ACCESS_LOG = {"version": 1, "disable_existing_loggers": False,
                    "loggers": {"uvicorn.access": {"level": "WARNING"}}}  # fmt: skip
SETUP_PY = """
from django.contrib.auth import get_user_model
from budgets.models import Plan, Quota
from chat.services.api_keys import api_key_create
user = get_user_model().objects.create(username="bench")
plan = Plan.objects.create(name="bench", daily_tokens=10**12, requests_per_minute=100_000,
                           concurrent_streams=1_000, max_output_tokens=4096)
Quota.objects.update_or_create(user=user, defaults={"plan": plan})
print("BENCH-KEY " + api_key_create(user_id=user.id, name="bench")[1])
"""
LITELLM_CONFIG = """model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {sandbox}/v1
      api_key: sandbox
general_settings:
  master_key: {key}
litellm_settings:
  telemetry: false
"""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    key: str
    processes: tuple[psutil.Process, ...]  # the gateway's own (none when direct)


@dataclass(frozen=True, slots=True)
class Sample:
    ttft: float | None
    total: float
    error: str | None


class Stack:
    """The sandbox, our service and LiteLLM's proxy, each a process of its own."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        pid = os.getpid()
        self.db = ROOT / "var" / f"bench-gateway-{pid}.sqlite3"
        self.litellm_config = ROOT / "var" / f"bench-gateway-{pid}-litellm.yaml"
        self.log_config = ROOT / "var" / f"bench-gateway-{pid}-logging.json"
        self.logs = {n: ROOT / "var" / f"bench-gateway-{pid}-{n}.log" for n in ("sandbox",
                     "daphne", "litellm")}  # fmt: skip
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "DATABASE_URL": f"sqlite:///{self.db}", "DEBUG": "false"}
        self.env.update(SECRET_KEY=secrets.token_urlsafe(40), LOG_LEVEL="WARNING")
        self.redis: EmbeddedRedis | None = None
        if not self.env.get("REDIS_URL", "").strip():
            folder = ROOT / "var" / f"bench-gateway-redis-{pid}"
            self.redis = EmbeddedRedis(folder, remove_on_stop=True)

    def spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> str:
        port = free_port()
        command = [part.replace("{port}", str(port)) for part in command]
        with open(self.logs[name], "wb") as log:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env or self.env, stdout=log, stderr=log
            )
        self.processes[name] = process
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited at start:\n{self.logs[name].read_text()[-3000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not listen on port {port} within {START_TIMEOUT:.0f} s")

    def start(self) -> list[Target]:
        a = self.args
        if self.redis is not None:
            self.env["REDIS_URL"] = self.redis.start().url
        sandbox = self.spawn("sandbox", [sys.executable, "-m", "sandbox", "--port", "{port}",
                             "--log-level", "warning", "--tokens-per-second", str(a.tps),
                             "--ttft-ms", str(a.ttft_ms)])  # fmt: skip
        self.env.update(OPENAI_API_KEY="sandbox", OPENAI_BASE_URL=sandbox + "/v1")
        self.env.update(ANTHROPIC_API_KEY="sandbox", ANTHROPIC_BASE_URL=sandbox)
        self.manage("migrate", "--no-input", "-v", "0")
        out = self.manage("shell", "-c", SETUP_PY)
        key = next(x for x in out.splitlines() if x.startswith("BENCH-KEY ")).split()[1]
        ours = self.spawn("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                          "{port}", "chatsite.asgi:application"])  # fmt: skip
        targets = [
            Target("direct", sandbox, "sandbox", ()),
            Target("ours", ours, key, (psutil.Process(self.processes["daphne"].pid),)),
        ]
        if a.litellm.exists():
            master = "sk-bench-" + secrets.token_hex(8)
            self.litellm_config.write_text(
                LITELLM_CONFIG.format(model=MODEL, sandbox=sandbox, key=master)
            )
            self.log_config.write_text(json.dumps(QUIET_ACCESS_LOG))
            env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            url = self.spawn("litellm", [str(a.litellm), "--config", str(self.litellm_config),
                             "--host", "127.0.0.1", "--port", "{port}", "--num_workers", "1",
                             "--log_config", str(self.log_config)], env=env)  # fmt: skip
            proc = psutil.Process(self.processes["litellm"].pid)
            targets.append(Target("litellm", url, master, (proc, *proc.children(recursive=True))))
        else:
            print(f"LiteLLM not found at {a.litellm}: its rows are left out (bench/README.md "
                  "says how to install it).")  # fmt: skip
        return targets

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def pids(self, name: str) -> tuple[psutil.Process, ...]:
        process = self.processes.get(name)
        return () if process is None else (psutil.Process(process.pid),)

    def stop(self, *, keep_logs: bool) -> None:
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.redis is not None:
            self.redis.stop()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.litellm_config.unlink(missing_ok=True)
        self.log_config.unlink(missing_ok=True)
        if not keep_logs:
            for log in self.logs.values():
                log.unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def has_text(event: bytes) -> bool:
    """Whether one SSE event is a chunk with non-empty delta content."""
    if not event.startswith(b"data: ") or event.startswith(b"data: [DONE]"):
        return False
    for choice in orjson.loads(event[6:]).get("choices") or ():
        if (choice.get("delta") or {}).get("content"):
            return True
    return False


async def one_stream(client: httpx2.AsyncClient, target: Target, body: bytes) -> Sample:
    """One streamed completion: when its first text arrived, when it ended, what went wrong."""
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
    started = time.perf_counter()
    ttft: float | None = None
    buffer = tail = b""
    error = None
    async with client.stream(
        "POST", target.url + "/v1/chat/completions", content=body, headers=headers
    ) as response:
        if response.status_code != 200:
            await response.aread()
            return Sample(None, time.perf_counter() - started, f"HTTP {response.status_code}")
        async for data in response.aiter_bytes():
            if ttft is None:
                *events, buffer = (buffer + data).split(b"\n\n")
                if any(has_text(event) for event in events):
                    ttft = time.perf_counter() - started
            if b'"error"' in data:
                error = "error in stream"
            tail = (tail + data)[-32:]
    total = time.perf_counter() - started
    if error is None and b"data: [DONE]" not in tail:
        error = "no [DONE]"
    return Sample(ttft, total, error)


def cpu_seconds(processes: tuple[psutil.Process, ...]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def level(
    client: httpx2.AsyncClient, target: Target, stack: Stack, concurrency: int, count: int, tag: str
) -> dict[str, object]:
    """`count` streams through `target`, `concurrency` at a time; latencies, rate and CPU."""
    a = stack.args
    shape = {
        "model": MODEL, "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": a.tokens + 16, "temperature": 1.0,
    }  # fmt: skip
    texts = [f"bench {tag} {i} sandbox-reply:{a.tokens}" for i in range(count)]
    bodies = [orjson.dumps({**shape, "messages": [{"role": "user", "content": t}]}) for t in texts]
    samples: list[Sample] = []

    async def worker() -> None:
        while bodies:
            samples.append(await one_stream(client, target, bodies.pop()))

    groups = {"gateway": target.processes, "sandbox": stack.pids("sandbox")}
    if stack.redis is not None and stack.redis.process is not None:
        groups["redis"] = (psutil.Process(stack.redis.process.pid),)
    before = {name: cpu_seconds(procs) for name, procs in groups.items()}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall0
    cpu = {name: 100 * (cpu_seconds(procs) - before[name]) / wall for name, procs in groups.items()}
    cpu["loadgen"] = 100 * (time.process_time() - cpu0) / wall
    good = [s for s in samples if s.error is None and s.ttft is not None]
    ttft = [s.ttft * 1000 for s in good]  # type: ignore[operator]
    total = [s.total * 1000 for s in good]
    errors = sorted({s.error for s in samples if s.error})
    return {
        "target": target.name, "concurrency": concurrency, "streams": count,
        "ttft_p50": percentile(ttft, 50), "ttft_p99": percentile(ttft, 99),
        "total_p50": percentile(total, 50), "total_p99": percentile(total, 99),
        "rate": len(good) / wall, "failed": count - len(good), "errors": errors, "cpu": cpu,
    }  # fmt: skip


ROW = "{:>3} {:>5} {:>8} {:>16} {:>16} {:>17} {:>17} {:>9} {:>6} {:>8} {:>8} {:>8}"
HEAD = ROW.format(
    "run", "conc", "path", "TTFT p50/p99", "total p50/p99", "+TTFT p50/p99", "+total p50/p99",
    "streams/s", "failed", "gateway", "sandbox", "loadgen",
)  # fmt: skip


def row(run: int, r: dict, direct: dict) -> str:
    def pair(key: str, minus: dict | None = None) -> str:
        lo, hi = r[f"{key}_p50"], r[f"{key}_p99"]
        if minus is not None:
            lo, hi = lo - minus[f"{key}_p50"], hi - minus[f"{key}_p99"]
        return f"{lo:.1f}/{hi:.1f}"

    added = None if r["target"] == "direct" else direct
    c = r["cpu"]
    flag = "*" if c["loadgen"] >= SATURATED else ""
    return ROW.format(
        run, r["concurrency"], r["target"], pair("ttft"), pair("total"),
        pair("ttft", added) if added else "-", pair("total", added) if added else "-",
        f"{r['rate']:.1f}", r["failed"], f"{c['gateway']:.0f}%" if r["target"] != "direct"
        else "-", f"{c['sandbox']:.0f}%", f"{c['loadgen']:.0f}%{flag}",
    )  # fmt: skip


async def bench(args: argparse.Namespace, stack: Stack) -> list[dict[str, object]]:
    targets = stack.start()
    levels = list(zip(args.concurrency, args.streams, strict=True))
    limits = httpx2.Limits(max_connections=max(args.concurrency) + 10)
    clients = {t.name: httpx2.AsyncClient(limits=limits, timeout=120) for t in targets}
    results: list[dict[str, object]] = []
    try:
        for target in targets:  # warm-up: imports, pools, first-call caches
            await level(clients[target.name], target, stack, 5, 10, f"warm-{target.name}")
        print(f"{args.tokens}-token answers, sandbox TTFT {args.ttft_ms} ms at {args.tps:g} "
              "tokens/s; ms; '+' = minus direct; CPU in % of one core", flush=True)  # fmt: skip
        print(HEAD, flush=True)
        for run in range(1, args.runs + 1):
            for concurrency, count in levels:
                by_target = {}
                for target in targets:
                    await asyncio.sleep(0.5)
                    tag = f"{run}-{concurrency}-{target.name}"
                    r = await level(clients[target.name], target, stack, concurrency, count, tag)
                    r["run"] = run
                    by_target[target.name] = r
                    results.append(r)
                    print(row(run, r, by_target["direct"]), flush=True)
                    if r["errors"]:
                        print(f"    errors: {', '.join(r['errors'])}", flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    return results


def summary(results: list[dict[str, object]]) -> None:
    """Our added TTFT and throughput next to LiteLLM's, averaged over the runs."""

    def mean(target: str, concurrency: int, key: str) -> float | None:
        values = [
            r[key] for r in results if r["target"] == target and r["concurrency"] == concurrency
        ]
        return sum(values) / len(values) if values else None

    print("\nMean of the runs:")
    for concurrency in sorted({r["concurrency"] for r in results}):
        direct = mean("direct", concurrency, "ttft_p50")
        parts = []
        for target in ("ours", "litellm"):
            ttft, rate = mean(target, concurrency, "ttft_p50"), mean(target, concurrency, "rate")
            if ttft is not None and direct is not None:
                parts.append(f"{target} +{ttft - direct:.1f} ms TTFT p50, {rate:.1f} streams/s")
        print(f"  {concurrency:>3} concurrent: {'; '.join(parts)}")
    if any(r["cpu"]["loadgen"] >= SATURATED for r in results):
        print(f"* the load generator used >= {SATURATED:.0f}% of a core: those rows measure it "
              "as well as the path (one process, one core).")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--concurrency", type=ints, default=[1, 10, 100])
    parser.add_argument("--streams", type=ints, default=[20, 100, 200], help="per level")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=40, help="answer length in tokens")
    parser.add_argument("--ttft-ms", type=int, default=50, help="the sandbox's time to first token")
    parser.add_argument("--tps", type=float, default=400.0, help="sandbox tokens/s per stream")
    parser.add_argument("--litellm", type=Path, default=ROOT / "var/litellm-venv/bin/litellm")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if len(args.concurrency) != len(args.streams):
        parser.error("--concurrency and --streams need the same number of values")
    stack = Stack(args)
    ok = False
    try:
        results = asyncio.run(bench(args, stack))
        ok = True
    finally:
        stack.stop(keep_logs=not ok)
        if not ok:
            print(f"logs kept: {', '.join(map(str, stack.logs.values()))}", file=sys.stderr)
    summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
