"""Token -> DOM latency in real Chromium: from the sandbox emitting a token to it being in the page.

    .venv/bin/python bench/browser_latency.py [--intervals 0.03,0.01,0] [--streams 1,20]
        [--runs 2] [--tokens 200] [--tps 50] [--json out.json]

It sets everything up itself and stops all of it at the end: a throw-away SQLite database under
var/ (migrated), the embedded Redis unless REDIS_URL is set, the sandbox as a subprocess with its
emission trace on (`python -m sandbox --trace`: wall-clock time of each streamed delta), and for
each CHAT_FRAME_INTERVAL a Daphne subprocess with DEBUG=false after `collectstatic`. Users and
their sessions are created with `manage.py shell -c` (no password hashing), one browser context
per user, one chat page per context.

A run: N pages send at once (the composer and Enter), each asking for an answer exactly --tokens
tokens long (`sandbox-reply:N`) paced at --tps tokens/s. An init script in each page records,
with a MutationObserver, (time, answer id, streaming?, text length) at every DOM change, and
the arrival time of every websocket frame. Text lengths map to token indexes through the
sandbox's trace, so each token gets `DOM time - emission time`. Page times are
performance.timeOrigin + performance.now(), corrected per page by its measured offset from
Date.now() (the same wall clock as the sandbox's time.time()). The observer fires at the end
of the task that swapped the frame in, after the page's own handlers (chat.js scrolls, which
forces a layout): a slight over-estimate of "in the DOM", never an under-estimate.
CPU is psutil's user+system time of each process over the run, as % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import psutil

ROOT = Path(__file__).resolve().parent.parent
# The repository root first, and not bench/: its queue.py would shadow the stdlib's queue.
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]

from chatsite.embedded_redis import EmbeddedRedis  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
TIME_LIMIT = 280.0  # seconds; runs left when it passes are skipped
RUN_TIMEOUT = 60.0

PAGE_SCRIPT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const B = window.__bench = {open: false, samples: [], frames: [], seen: {}, waiters: []};
  // Resolves once an answer not in `known` has left the streaming state.
  const ended = (known) => [...document.querySelectorAll("article.msg.assistant")]
    .some((a) => !known.includes(a.id) && !a.classList.contains("status-streaming"));
  B.done = (known) => new Promise((resolve) => {
    if (ended(known)) resolve(true); else B.waiters.push([known, resolve]);
  });
  document.addEventListener("htmx:wsOpen", () => { B.open = true; });
  document.addEventListener("htmx:wsClose", () => { B.open = false; });
  document.addEventListener("htmx:wsBeforeMessage", (e) => {
    const m = String(e.detail.message);
    B.frames.push([now(), m.startsWith('<div hx-swap-oob="beforeend:#msg-') ? 1 : 0]);
  });
  new MutationObserver(() => {
    const t = now();
    for (const art of document.querySelectorAll("article.msg.assistant")) {
      const streaming = art.classList.contains("status-streaming") ? 1 : 0;
      const el = art.querySelector(".msg-text");
      const len = el ? el.textContent.length : 0;
      const key = art.id + ":" + streaming;
      if (B.seen[key] !== len) { B.seen[key] = len; B.samples.push([t, art.id, streaming, len]); }
    }
    if (B.waiters.length) B.waiters = B.waiters.filter(([k, r]) => !(ended(k) && (r(true), 1)));
  }).observe(document, {childList: true, subtree: true, characterData: true});
})();
"""
# Date.now() - (timeOrigin + now()), averaged (Date.now() truncates to whole ms: +0.5).
OFFSET_JS = """() => { let s = 0; for (let i = 0; i < 200; i++) {
  s += Date.now() + 0.5 - (performance.timeOrigin + performance.now()); } return s / 200; }"""
USERS_PY = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
from chat.models import Conversation
out = []
for i in range({users}):
    user = get_user_model()(username=f"bench{{i}}")
    user.set_unusable_password()
    user.save()
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    convs = [str(Conversation.objects.create(user=user).id) for _ in range({configs})]
    out.append({{"session": session.session_key, "conversations": convs}})
print("BENCH-USERS " + json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited at start:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within 30 s")


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class CpuMeter:
    """User+system CPU seconds of named groups of processes between start() and stop()."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups

    @staticmethod
    def _seconds(procs: list[psutil.Process]) -> float:
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.before = {name: self._seconds(procs) for name, procs in self.groups.items()}
        self.machine = psutil.cpu_times()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        out = {
            name: 100 * (self._seconds(procs) - self.before[name]) / wall
            for name, procs in self.groups.items()
        }
        now, then = psutil.cpu_times(), self.machine
        busy = (now.user + now.system + now.nice + now.irq + now.softirq) - (
            then.user + then.system + then.nice + then.irq + then.softirq
        )
        out["machine"] = 100 * busy / wall  # of all cores: 200% = both busy
        return out


def chromium_processes() -> dict[str, list[psutil.Process]]:
    """Chromium's processes by --type (browser, renderer, gpu-process, utility), and the driver."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            name, cmdline = proc.name(), proc.cmdline()
        except psutil.Error:
            continue
        if name == "node" or "playwright" in " ".join(cmdline[:2]):
            kind = "driver"
        elif "chrom" in name:
            types = [a.removeprefix("--type=") for a in cmdline if a.startswith("--type=")]
            kind = types[0] if types else "browser"
        else:
            continue
        found.setdefault(f"chromium:{kind}", []).append(proc)
    return found


class Stack:
    """Everything outside the browser: database, Redis, the sandbox, Daphne (per interval)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        pid = os.getpid()
        self.db = ROOT / "var" / f"bench-{pid}.sqlite3"
        self.redis: EmbeddedRedis | None = None
        self.sandbox: subprocess.Popen[bytes] | None = None
        self.daphne: subprocess.Popen[bytes] | None = None
        self.logs = [ROOT / "var" / f"bench-{pid}-{name}.log" for name in ("sandbox", "daphne")]
        self.env = {**os.environ, "DATABASE_URL": f"sqlite:///{self.db}", "DEBUG": "false"}
        self.env.update(SECRET_KEY=secrets.token_urlsafe(40), SECURE_COOKIES="false")
        self.env.update(LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        if not self.env.get("REDIS_URL", "").strip():
            self.redis = EmbeddedRedis(ROOT / "var" / f"bench-redis-{pid}", remove_on_stop=True)

    def manage(self, *args: str) -> str:
        command = [sys.executable, "manage.py", *args]
        done = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def start(self, users: int, configs: int) -> list[dict[str, object]]:
        if self.redis is not None:
            self.env["REDIS_URL"] = self.redis.start().url
        port = free_port()
        a = self.args
        command = [
            sys.executable, "-m", "sandbox", "--port", str(port), "--trace", "--log-level",
            "warning", "--tokens-per-second", str(a.tps), "--ttft-ms", str(a.ttft_ms),
        ]  # fmt: skip
        with open(self.logs[0], "wb") as log:
            self.sandbox = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
        wait_for_port(port, self.sandbox, self.logs[0])
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.env.update(
            ANTHROPIC_API_KEY="x", ANTHROPIC_BASE_URL=self.sandbox_url, OPENAI_API_KEY="x",
            OPENAI_BASE_URL=self.sandbox_url + "/v1", LLM_SANDBOX_URL=self.sandbox_url,
        )  # fmt: skip
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("collectstatic", "--no-input", "-v", "0")
        out = self.manage("shell", "-c", USERS_PY.format(users=users, configs=configs))
        line = next(x for x in out.splitlines() if x.startswith("BENCH-USERS "))
        return json.loads(line.removeprefix("BENCH-USERS "))

    def start_daphne(self, interval: float) -> str:
        port = free_port()
        env = {**self.env, "CHAT_FRAME_INTERVAL": str(interval)}
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                   "chatsite.asgi:application"]  # fmt: skip
        with open(self.logs[1], "ab") as log:
            self.daphne = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        wait_for_port(port, self.daphne, self.logs[1])
        return f"http://127.0.0.1:{port}"

    @staticmethod
    def _end(process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_daphne(self) -> None:
        self._end(self.daphne)
        self.daphne = None

    def stop(self, *, keep_logs: bool) -> None:
        self.stop_daphne()
        self._end(self.sandbox)
        if self.redis is not None:
            self.redis.stop()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        if not keep_logs:
            for log in self.logs:
                log.unlink(missing_ok=True)

    def traces(self) -> list[dict[str, object]]:
        return httpx2.get(self.sandbox_url + "/sandbox/trace", timeout=10).json()["traces"]

    def clear_traces(self) -> None:
        httpx2.delete(self.sandbox_url + "/sandbox/trace", timeout=10)


async def open_pages(
    browser, url: str, users: list[dict[str, object]], config: int, motion: str, size: str
) -> list:
    width, height = (int(x) for x in size.split("x"))
    viewport = {"width": width, "height": height}

    async def one(user: dict[str, object]):
        context = await browser.new_context(
            base_url=url, bypass_csp=True, reduced_motion=motion, viewport=viewport
        )
        await context.add_cookies([{"name": "sessionid", "value": user["session"], "url": url}])
        await context.add_init_script(PAGE_SCRIPT)
        page = await context.new_page()
        await page.goto(f"/c/{user['conversations'][config]}/")
        await page.wait_for_function("window.__bench.open", timeout=20_000)
        return page

    return list(await asyncio.gather(*(one(user) for user in users)))


async def page_offset(page) -> float:
    return await page.evaluate(OFFSET_JS) / 1000


async def ask_all(pages: list, texts: list[str]) -> list[set[str]]:
    """Type each text in its page's composer and press Enter, all pages at once."""
    known = await asyncio.gather(
        *(p.evaluate("[...document.querySelectorAll('article.msg.assistant')].map(a => a.id)")
          for p in pages)
    )  # fmt: skip
    for page in pages:
        await page.evaluate("window.__bench.samples = []; window.__bench.frames = []")

    async def send(page, text: str) -> None:
        await page.fill("#composer-input", text)
        await page.press("#composer-input", "Enter")

    await asyncio.gather(*(send(p, t) for p, t in zip(pages, texts, strict=True)))
    return [set(k) for k in known]


async def wait_done(pages: list, known: list[set[str]]) -> None:
    """Wait (in the pages, without polling) until each page's new answer has ended."""
    done = "(k) => window.__bench.done(k)"
    waits = (p.evaluate(done, list(k)) for p, k in zip(pages, known, strict=True))
    try:
        await asyncio.wait_for(asyncio.gather(*waits), RUN_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(f"answers unfinished after {RUN_TIMEOUT:.0f} s") from None


def page_latencies(trace: dict, samples: list, frames: list, known: set[str], offset: float):
    """Per-token latencies (s), server-side part (s), tokens shown only at the end, frames/s."""
    new = [s for s in samples if s[1] not in known]
    ids = {s[1] for s in new}
    if len(ids) != 1:
        raise RuntimeError(f"expected one new answer in the page, found {sorted(ids)}")
    streaming = [(t / 1000 + offset, n) for t, _, live, n in new if live]
    ended = [t / 1000 + offset for t, _, live, _ in new if not live]
    arrivals = [t / 1000 + offset for t, _ in frames]
    delta_times = [t / 1000 + offset for t, is_delta in frames if is_delta]
    latencies, server, at_end = [], [], 0
    cumulative, i = 0, 0
    for emitted, _tokens, text in trace["deltas"]:
        cumulative += utf16_len(text)
        while i < len(streaming) and streaming[i][1] < cumulative:
            i += 1
        if i < len(streaming):
            shown = streaming[i][0]
        else:
            shown, at_end = ended[0], at_end + 1
        latencies.append(shown - emitted)
        received = max((a for a in arrivals if a <= shown + 1e-4), default=shown)
        server.append(received - emitted)
    span = delta_times[-1] - delta_times[0] if len(delta_times) > 1 else float("nan")
    fps = (len(delta_times) - 1) / span if span > 0 else float("nan")
    return latencies, server, at_end, fps, len(delta_times)


async def measure(stack: Stack, pages: list, n: int, tag: str, groups) -> dict[str, object]:
    tokens = stack.args.tokens
    active = pages[:n]
    texts = [f"bench {tag} page {i} sandbox-reply:{tokens}" for i in range(n)]
    stack.clear_traces()
    meter = CpuMeter(groups)
    meter.start()
    known = await ask_all(active, texts)
    await wait_done(active, known)
    cpu = meter.stop()
    by_question = {t["question"]: t for t in stack.traces()}
    lat, srv, at_end, fps, frames = [], [], 0, [], 0
    for page, text, k in zip(active, texts, known, strict=True):
        data = await page.evaluate("({samples: __bench.samples, frames: __bench.frames})")
        result = page_latencies(
            by_question[text], data["samples"], data["frames"], k, await page_offset(page)
        )
        lat += result[0]
        srv += result[1]
        at_end += result[2]
        fps.append(result[3])
        frames += result[4]
    ms = [x * 1000 for x in lat]
    return {
        "streams": n, "tokens": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90),
        "p99": percentile(ms, 99), "max": max(ms), "server_p50": percentile(srv, 50) * 1000,
        "server_p99": percentile(srv, 99) * 1000, "at_end": at_end,
        "fps_page": sum(fps) / len(fps), "fps_total": sum(fps), "frames": frames, "cpu": cpu,
    }  # fmt: skip


ROW = "{:>8} {:>7} {:>3} {:>6} {:>7} {:>7} {:>7} {:>7} {:>9} {:>8} {:>8} {:>7} {:>7} {:>7} {:>8}"
HEAD = ROW.format(
    "interval", "streams", "run", "tokens", "p50", "p90", "p99", "max", "srv p50/99",
    "fps/page", "fps tot", "daphne", "chrome", "sandbox", "machine",
)  # fmt: skip


def row(interval: float, run: int, r: dict) -> str:
    c = r["cpu"]
    return ROW.format(
        f"{interval * 1000:g} ms", r["streams"], run, r["tokens"], f"{r['p50']:.1f}",
        f"{r['p90']:.1f}", f"{r['p99']:.1f}", f"{r['max']:.1f}",
        f"{r['server_p50']:.1f}/{r['server_p99']:.0f}", f"{r['fps_page']:.1f}",
        f"{r['fps_total']:.0f}", f"{c['daphne']:.0f}%", f"{c['chromium']:.0f}%",
        f"{c['sandbox']:.0f}%", f"{c['machine']:.0f}%",
    )  # fmt: skip


async def bench(args: argparse.Namespace, stack: Stack) -> list[dict[str, object]]:
    from playwright.async_api import async_playwright

    intervals = [float(x) for x in args.intervals.split(",")]
    streams = [int(x) for x in args.streams.split(",")]
    started = time.monotonic()
    users = stack.start(max(streams), len(intervals))
    print(f"set up in {time.monotonic() - started:.1f} s; ms are token -> DOM latency; "
          "CPU in % of one core (machine: of both)", flush=True)  # fmt: skip
    print(HEAD, flush=True)
    results: list[dict[str, object]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for config, interval in enumerate(intervals):
                url = stack.start_daphne(interval)
                pages = await open_pages(browser, url, users, config, args.motion, args.viewport)
                chrome = chromium_processes()
                groups = {
                    "daphne": [psutil.Process(stack.daphne.pid)],
                    "chromium": [p for ps in chrome.values() for p in ps],
                    **chrome,
                    "sandbox": [psutil.Process(stack.sandbox.pid)],
                    "bench": [psutil.Process()],
                }
                if stack.redis is not None and stack.redis.process is not None:
                    groups["redis"] = [psutil.Process(stack.redis.process.pid)]
                # Warm-up: every page once, short answers (imports, clients, quotas).
                known = await ask_all(pages, [f"warm {config} {i} sandbox-reply:10" for i in
                                              range(len(pages))])  # fmt: skip
                await wait_done(pages, known)
                for n in streams:
                    for run in range(1, args.runs + 1):
                        if time.monotonic() - started > TIME_LIMIT:
                            print(f"time limit ({TIME_LIMIT:.0f} s) reached: skipping the rest")
                            return results
                        await asyncio.sleep(0.5)
                        r = await measure(stack, pages, n, f"{config}-{n}-{run}", groups)
                        r.update(interval=interval, run=run)
                        results.append(r)
                        print(row(interval, run, r), flush=True)
                for page in pages:
                    await page.context.close()
                stack.stop_daphne()
        finally:
            await browser.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intervals", default="0.03,0.01,0", help="CHAT_FRAME_INTERVAL values")
    parser.add_argument("--streams", default="1,20", help="concurrent streams per run")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=200, help="answer length in tokens")
    parser.add_argument("--tps", type=float, default=50.0, help="sandbox tokens/s per stream")
    parser.add_argument("--ttft-ms", type=int, default=100)
    parser.add_argument(
        "--motion",
        choices=["no-preference", "reduce"],
        default="no-preference",
        help="the pages' prefers-reduced-motion (reduce stops the streaming dot's animation)",
    )
    parser.add_argument("--viewport", default="1280x720", help="each page's size, WxH")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    stack = Stack(args)
    ok = False
    try:
        results = asyncio.run(bench(args, stack))
        ok = True
    finally:
        stack.stop(keep_logs=not ok)
        if not ok:
            print(f"logs kept: {', '.join(str(p) for p in stack.logs)}", file=sys.stderr)
    print("\nChromium's CPU by process type (% of one core, mean of the runs):")
    for key in sorted({(r["interval"], r["streams"]) for r in results}):
        cpus = [r["cpu"] for r in results if (r["interval"], r["streams"]) == key]
        kinds = sorted({k for c in cpus for k in c if k.startswith("chromium:")})
        parts = ", ".join(
            f"{k.removeprefix('chromium:')} {sum(c.get(k, 0) for c in cpus) / len(cpus):.0f}%"
            for k in kinds
        )
        print(f"  {key[0] * 1000:g} ms, {key[1]} streams: {parts}")
    machine = max((r["cpu"]["machine"] for r in results), default=0)
    loadgen = max(
        (r["cpu"]["chromium"] + r["cpu"]["sandbox"] + r["cpu"]["bench"] for r in results), default=0
    )
    print(f"load generator (Chromium + driver + sandbox + this script) peak: {loadgen:.0f}% of "
          f"one core; machine peak {machine:.0f}% of 200%.")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
