"""`make run`: everything a development machine needs, started and stopped together.

Starts the embedded Redis unless REDIS_URL is set, the provider sandbox for each provider
that has neither an API key nor a base URL, migrates, creates the first admin in DEBUG,
then starts the task worker (`manage.py run_worker`) and serves Daphne on 127.0.0.1:PORT.
Ctrl-C (or SIGTERM) stops everything it started, in reverse order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from chatsite.embedded_redis import EmbeddedRedis

BASE_DIR = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a child process exited at start (code {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answered on port {port} within {timeout:.0f}s")


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, check=True)


def main() -> None:
    env = os.environ
    env.setdefault("DEBUG", "true")
    port = int(env.get("PORT", "8000"))
    children: list[subprocess.Popen[bytes]] = []
    redis_server: EmbeddedRedis | None = None

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background ignores SIGINT.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        if not env.get("REDIS_URL", "").strip():
            redis_server = EmbeddedRedis(BASE_DIR / "var" / "redis").start()
            env["REDIS_URL"] = redis_server.url
        redis_note = f"embedded ({env['REDIS_URL']})" if redis_server else env["REDIS_URL"]

        providers = {"anthropic": "ANTHROPIC", "openai": "OPENAI"}
        needs_sandbox = [
            name
            for name, prefix in providers.items()
            if not env.get(f"{prefix}_API_KEY", "").strip()
            and not env.get(f"{prefix}_BASE_URL", "").strip()
        ]
        if needs_sandbox:
            sandbox_port = _free_port()
            sandbox = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sandbox",
                    "--port",
                    str(sandbox_port),
                    "--log-level",
                    "warning",
                ],
                cwd=BASE_DIR,
                start_new_session=True,  # Ctrl-C reaches only us; we stop children in order
            )
            children.append(sandbox)
            _wait_for_port(sandbox_port, sandbox)
            sandbox_url = f"http://127.0.0.1:{sandbox_port}"
            env["LLM_SANDBOX_URL"] = sandbox_url
            for name in needs_sandbox:
                prefix = providers[name]
                env[f"{prefix}_BASE_URL"] = sandbox_url + ("/v1" if name == "openai" else "")
                env[f"{prefix}_API_KEY"] = "sandbox"

        _manage("migrate", "--no-input", "-v", "0")
        if env["DEBUG"].lower() in {"1", "true", "yes", "on"}:
            _manage("ensure_dev_admin")
        else:
            _manage("collectstatic", "--no-input", "-v", "0")

        # The task worker (documents, batches...): started before Daphne so it stops after it,
        # finishing its current task; a task cut short runs again at the next start.
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "run_worker"], cwd=BASE_DIR, start_new_session=True
        )
        children.append(worker)

        daphne = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "chatsite.asgi:application"],
            cwd=BASE_DIR,
            start_new_session=True,
        )  # fmt: skip
        children.append(daphne)
        _wait_for_port(port, daphne)
        print(f"\n  Chat is running at http://127.0.0.1:{port}/")
        for name, prefix in providers.items():
            if name in needs_sandbox:
                where = "sandbox (local emulator, no real calls)"
            else:
                where = env.get(f"{prefix}_BASE_URL") or "real API"
            print(f"  {name:<10} {where}")
        print(f"  redis      {redis_note}")
        print(f"  worker     manage.py run_worker (pid {worker.pid}, every queue)")
        print("  Sign up at /accounts/signup/ or sign in as above. Ctrl-C stops everything.\n")
        daphne.wait()
    except KeyboardInterrupt:
        print("\nstopping…")
    finally:
        # One at a time, last started first: Daphne, then the worker, then the sandbox.
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if redis_server is not None:
            redis_server.stop()


if __name__ == "__main__":
    main()
