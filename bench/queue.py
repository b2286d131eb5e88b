"""Benchmark live turns beside background work: time to first token with and without a batch.

    .venv/bin/python bench/queue.py [--load auto|batch|direct] [--turns 40] [--rate 2]
        [--items 200] [--rpm 300] [--tpm 2000000] [--runs 2] [--database-url URL]

It sets itself up and tears everything down: a throw-away SQLite database, or an empty one
given with --database-url (e.g. PostgreSQL), migrated; the embedded Redis unless REDIS_URL is
set; the sandbox and a Daphne (DEBUG=false) as subprocesses; one user with a large plan and
an API key. Live turns go through the whole
pipeline over the OpenAI-compatible API (the openai SDK, streaming), `--rate` a second, each
asking for a short answer; TTFT is measured in the client, from the request to the first
content chunk. Each run measures the live turns alone ("idle"), then again while a
200-item background load runs ("batch"):
- `batch`: a real batch job of 200 documents (chat/services/batches.py `batch_job_create`)
  run by a real `manage.py run_worker`;
- `direct`: 200 background calls, each through `limiter_wait_background` then the OpenAI
  adapter, in worker threads of a separate process (`--threads`);
- `auto`: `batch` when the batch service and its tasks are there, else `direct`.
Both sides share the provider limiter (LLM_OPENAI_REQUESTS/TOKENS_PER_MINUTE from --rpm and
--tpm, 30% headroom); the peak of the provider's minute is sampled during each phase.
CPU is psutil user+system time per process over the phase, in % of one core.
"""

from __future__ import annotations

import sys
from os import path

# This file is named queue.py and Python puts its folder first on sys.path: drop it, or
# `import queue` (concurrent.futures, redis...) would import this script instead of the stdlib.
if sys.path and path.abspath(sys.path[0] or ".") == path.dirname(path.abspath(__file__)):
    del sys.path[0]

import argparse
import asyncio
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "gpt-5-mini"
DOCUMENT = "The quarterly report covers revenue, costs and the outlook for each region. " * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited at start:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within 60 s")


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class CpuMeter:
    """User+system CPU of named processes between start() and stop(), in % of one core."""

    def __init__(self, groups: dict[str, psutil.Process]) -> None:
        self.groups = groups

    @staticmethod
    def _seconds(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
            return times.user + times.system
        except psutil.Error:
            return 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before = {name: self._seconds(p) for name, p in self.groups.items()}
        self.machine = sum(psutil.cpu_times()[:3])

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        out = {n: 100 * (self._seconds(p) - self.before[n]) / wall for n, p in self.groups.items()}
        out["machine"] = 100 * (sum(psutil.cpu_times()[:3]) - self.machine) / wall
        return out


class Stack:
    """Database, Redis, the sandbox, Daphne and (batch load) a task worker."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.redis = None
        database = args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
        env = {**os.environ, "DATABASE_URL": database}
        env.update(DEBUG="false", SECRET_KEY=secrets.token_urlsafe(40), SECURE_COOKIES="false")
        env.update(LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", ALLOWED_HOSTS="127.0.0.1")
        env.update(
            LLM_OPENAI_REQUESTS_PER_MINUTE=str(args.rpm),
            LLM_OPENAI_TOKENS_PER_MINUTE=str(args.tpm),
            LLM_BACKGROUND_HEADROOM="0.3",
            CHAT_RESPONSE_CACHE="false",
            CHAT_BATCH_MAX_DOCUMENTS=str(max(args.items, 1)),
        )
        self.env = env

    def spawn(self, name: str, command: list[str], port: int | None = None) -> None:
        log = self.tmp / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=out)
        self.procs[name] = process
        if port is not None:
            wait_for_port(port, process, log)

    def start(self) -> None:
        if not self.env.get("REDIS_URL", "").strip():
            from chatsite.embedded_redis import EmbeddedRedis

            self.redis = EmbeddedRedis(self.tmp / "redis", remove_on_stop=True)
            self.env["REDIS_URL"] = self.redis.start().url
        port = free_port()
        self.spawn("sandbox", [
            sys.executable, "-m", "sandbox", "--port", str(port), "--log-level", "warning",
            "--tokens-per-second", str(self.args.tps), "--ttft-ms", str(self.args.ttft_ms),
            "--batch-seconds", "5",
        ], port)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        self.env.update(
            ANTHROPIC_API_KEY="x", ANTHROPIC_BASE_URL=url, OPENAI_API_KEY="x",
            OPENAI_BASE_URL=url + "/v1", LLM_SANDBOX_URL=url,
        )  # fmt: skip
        os.environ.update(self.env)  # this process reads the same settings
        import django

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
        django.setup()
        from django.core.management import call_command

        call_command("migrate", "--no-input", verbosity=0)
        self.daphne_port = free_port()
        self.spawn("daphne", [
            sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.daphne_port),
            "chatsite.asgi:application",
        ], self.daphne_port)  # fmt: skip
        if self.args.load == "batch":
            self.spawn("worker", [sys.executable, "manage.py", "run_worker", "--no-startup-delay"])

    def stop(self) -> None:
        for process in reversed(list(self.procs.values())):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.redis is not None:
            self.redis.stop()


def make_user() -> tuple[int, str]:
    """A user on a plan large enough that budgets never refuse the bench, and an API key."""
    from django.contrib.auth import get_user_model

    from budgets.models import Plan, Quota
    from chat.services.api_keys import api_key_create

    plan = Plan.objects.create(
        name="bench-queue", daily_tokens=10**12, requests_per_minute=10_000,
        concurrent_streams=1000, max_output_tokens=100_000,
    )  # fmt: skip
    user = get_user_model().objects.create_user("bench-queue")
    Quota.objects.create(user=user, plan=plan)
    _, raw = api_key_create(user_id=user.pk, name="bench")
    return user.pk, raw


async def live_turns(base_url: str, key: str, args, tag: str) -> tuple[list[float], list[str]]:
    """`--turns` streamed completions started `--rate` a second; TTFT of each in ms."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    ttfts: list[float] = []
    failures: list[str] = []

    async def one(n: int) -> None:
        text = f"Live question {tag}-{n}: how is the quarter? sandbox-reply:{args.reply}"
        start = time.perf_counter()
        try:
            stream = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": text}], stream=True
            )
            first = None
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
            if first is None:
                failures.append("no content")
            else:
                ttfts.append((first - start) * 1000)
        except openai.APIError as exc:
            failures.append(f"{type(exc).__name__} {getattr(exc, 'status_code', '')}".strip())

    tasks = []
    t0 = time.perf_counter()
    for n in range(args.turns):
        await asyncio.sleep(max(0.0, t0 + n / args.rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    await client.close()
    return ttfts, failures


class PeakSampler(threading.Thread):
    """The busiest the provider's minute got (requests, tokens), sampled every 0.25 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.requests = self.tokens = 0

    def run(self) -> None:
        from chat.services.limiter import limiter_usage

        while not self.halt.wait(0.25):
            try:
                usage = limiter_usage(provider="openai")
            except OSError:  # Redis stopped under it (the bench failed): nothing to sample
                return
            self.requests = max(self.requests, usage.requests)
            self.tokens = max(self.tokens, usage.tokens)

    def finish(self) -> tuple[int, int]:
        self.halt.set()
        self.join()
        return self.requests, self.tokens


def direct_load(args) -> None:
    """(Subprocess) `--items` background calls: limiter, then the OpenAI adapter, in threads."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    import django

    django.setup()
    from chat.providers import catalog
    from chat.providers.base import ChatMessage, ChatRequest, StreamEnd
    from chat.providers.tokens import local_prompt_tokens
    from chat.services.limiter import limiter_wait_background

    model, provider = catalog.resolve(MODEL)
    queue = list(range(args.items))
    lock = threading.Lock()
    waited: list[float] = []

    async def call(request: ChatRequest) -> None:
        async for event in provider.stream(request):
            if isinstance(event, StreamEnd):
                return

    def worker() -> None:
        with asyncio.Runner() as runner:
            while True:
                with lock:
                    if not queue:
                        return
                    n = queue.pop()
                content = f"Summarise document {n}.\n\n{DOCUMENT} sandbox-reply:{args.item_reply}"
                request = ChatRequest(
                    model=MODEL, messages=(ChatMessage("user", content),), max_tokens=400
                )
                tokens = local_prompt_tokens(model, request) + request.max_tokens
                waited.append(limiter_wait_background(provider="openai", tokens=tokens))
                runner.run(call(request))
                print(f"LOAD-ITEM {n}", flush=True)

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"LOAD-DONE {time.monotonic() - start:.1f} waited {sum(waited):.1f}", flush=True)


class DirectLoad:
    """The `direct` load as a subprocess of this script; counts the items it finishes."""

    def __init__(self, stack: Stack, args) -> None:
        command = [
            sys.executable,
            __file__,
            "--direct-load",
            "--items",
            str(args.items),
            "--threads",
            str(args.threads),
            "--item-reply",
            str(args.item_reply),
        ]
        self.process = subprocess.Popen(command, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE)
        self.done_items, self.summary = 0, ""
        self.first = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:  # type: ignore[union-attr]
            line = raw.decode().strip()
            if line.startswith("LOAD-ITEM"):
                self.done_items += 1
                self.first.set()
            elif line.startswith("LOAD-DONE"):
                self.summary = line.removeprefix("LOAD-DONE ")
        self.first.set()

    def cpu_process(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def wait(self) -> float:
        self.process.wait()
        self.reader.join()
        return float(self.summary.split()[0]) if self.summary else float("nan")


class BatchLoad:
    """The `batch` load: a real batch job of `--items` documents, run by `manage.py run_worker`."""

    def __init__(self, stack: Stack, args, user_id: int, tag: str) -> None:
        import hashlib

        from chat.models import Document
        from chat.services.batches import batch_job_create

        documents = []
        for n in range(args.items):
            text = f"Document {tag}-{n}. {DOCUMENT}"
            data = text.encode()
            documents.append(Document(
                user_id=user_id, name=f"report-{tag}-{n}.txt", kind=Document.Kind.TEXT,
                size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), data=data,
                status=Document.Status.READY, text=text, chars=len(text),
            ))  # fmt: skip
        Document.objects.bulk_create(documents)
        self.job = batch_job_create(
            user_id=user_id,
            model=MODEL,
            document_ids=[d.id for d in documents],
            instruction=f"Summarise this document. sandbox-reply:{args.item_reply}",
        )
        self.worker = stack.procs["worker"]
        self.first = threading.Event()
        self.started = time.monotonic()
        self.seconds = float("nan")
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _finished_items(self) -> int:
        from chat.models import BatchItem

        return BatchItem.objects.filter(job_id=self.job.id, finished_at__isnull=False).count()

    def _watch(self) -> None:
        from django.db import connection

        from chat.models import BatchJob
        from chat.services.batches import FINISHED

        try:
            while True:
                if self._finished_items():
                    self.first.set()
                status = BatchJob.objects.values_list("status", flat=True).get(pk=self.job.id)
                if status in FINISHED:
                    self.status = status
                    self.seconds = time.monotonic() - self.started
                    return
                time.sleep(0.1)
        finally:
            self.first.set()
            connection.close()

    @property
    def done_items(self) -> int:
        return self._finished_items()

    def cpu_process(self) -> psutil.Process:
        return psutil.Process(self.worker.pid)

    def wait(self) -> float:
        self.watcher.join(600)
        return self.seconds


def phase(stack: Stack, args, user: tuple[int, str], tag: str, with_load: bool) -> dict:
    """Live turns at a steady rate, alone or while the background load runs."""
    sampler = PeakSampler()  # from the load's start to its end, so every call is seen
    sampler.start()
    load: DirectLoad | BatchLoad | None = None
    if with_load:
        batch = args.load == "batch"
        load = BatchLoad(stack, args, user[0], tag) if batch else DirectLoad(stack, args)
        load.first.wait(120)  # the load is flowing before the live turns start
    groups = {name: psutil.Process(p.pid) for name, p in stack.procs.items()}
    groups["bench"] = psutil.Process()
    if stack.redis is not None:
        groups["redis"] = psutil.Process(stack.redis.process.pid)
    if isinstance(load, DirectLoad):
        groups["load"] = load.cpu_process()
    meter = CpuMeter(groups)
    meter.start()
    base_url = f"http://127.0.0.1:{stack.daphne_port}"
    ttfts, failures = asyncio.run(live_turns(base_url, user[1], args, tag))
    cpu = meter.stop()
    during = load.done_items if load else 0
    load_seconds = load.wait() if load else 0.0
    time.sleep(0.5)  # the last live notes land
    peak = sampler.finish()
    return {"ttfts": ttfts, "failures": failures, "cpu": cpu, "peak": peak,
            "items_during": during, "load_seconds": load_seconds}  # fmt: skip


def report(run: int, label: str, r: dict, args) -> None:
    t = r["ttfts"]
    cpu = "  ".join(f"{name} {value:.0f}%" for name, value in r["cpu"].items())
    print(
        f"run {run} {label:<6} n={len(t):>3} failed={len(r['failures'])}  TTFT p50 "
        f"{percentile(t, 50):6.1f}  p95 {percentile(t, 95):6.1f}  p99 {percentile(t, 99):6.1f}  "
        f"max {max(t, default=float('nan')):6.1f} ms  | minute peak {r['peak'][0]}/{args.rpm} req "
        f"{r['peak'][1]:,}/{args.tpm:,} tok"
    )
    if label != "idle":
        print(
            f"         load: {r['items_during']} of {args.items} items done during the live "
            f"turns, all {args.items} in {r['load_seconds']:.1f} s"
        )
    saturated = [n for n in ("bench", "load", "worker") if r["cpu"].get(n, 0) > 85]
    print(
        f"         CPU (% of a core): {cpu}; load generator saturates a core: "
        f"{'yes (' + ', '.join(saturated) + ')' if saturated else 'no'}"
    )
    if r["failures"]:
        print(f"         failures: {sorted(set(r['failures']))}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", choices=("auto", "batch", "direct"), default="auto")
    parser.add_argument("--turns", type=int, default=40, help="live turns per phase")
    parser.add_argument("--rate", type=float, default=2.0, help="live turns started a second")
    parser.add_argument("--reply", type=int, default=40, help="tokens in a live answer")
    parser.add_argument("--items", type=int, default=200, help="items in the background load")
    parser.add_argument("--item-reply", type=int, default=30, help="tokens in an item's answer")
    parser.add_argument("--threads", type=int, default=8, help="direct load: worker threads")
    parser.add_argument("--rpm", type=int, default=300, help="OpenAI requests a minute")
    parser.add_argument("--tpm", type=int, default=2_000_000, help="OpenAI tokens a minute")
    parser.add_argument("--tps", type=float, default=400.0, help="sandbox tokens a second")
    parser.add_argument("--ttft-ms", type=int, default=50, help="sandbox time to first token")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--database-url", default="", help="an empty throw-away database instead of SQLite"
    )
    parser.add_argument("--direct-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.direct_load:
        direct_load(args)
        return 0
    if args.load == "auto":
        found = (ROOT / "chat" / "tasks" / "batches.py").exists()
        args.load = "batch" if found else "direct"
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        stack = Stack(args, Path(tmp))
        try:
            stack.start()
            user = make_user()
            key = user[1]
            print(
                f"load: {args.load}  live: {args.turns} turns at {args.rate}/s, "
                f"{args.reply}-token answers  background: {args.items} items  OpenAI limit: "
                f"{args.rpm} req, {args.tpm:,} tok a minute (30% headroom)  sandbox: "
                f"{args.tps:.0f} tok/s, TTFT {args.ttft_ms} ms  cores: {os.cpu_count()}"
            )
            asyncio.run(
                live_turns(
                    f"http://127.0.0.1:{stack.daphne_port}",
                    key,
                    argparse.Namespace(**{**vars(args), "turns": 5}),
                    "warm",
                )
            )
            time.sleep(3)  # the worker's start-up is not counted in the first phase
            for run in range(1, args.runs + 1):
                results = {}
                for label, with_load in (("idle", False), ("batch", True)):
                    results[label] = phase(stack, args, user, f"{run}-{label}", with_load)
                    report(run, label, results[label], args)
        finally:
            stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
