"""A real `manage.py run_worker` process against the test database, for tests of background work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], object], *, timeout: float = 30.0, what: str = "") -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(0.05)


class TaskWorker:
    """`python manage.py run_worker` in a subprocess (cwd: the repository root)."""

    def __init__(self, *, env: dict[str, str], queues: str = "*") -> None:
        self.env = env
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None
        self.worker_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
        self.log = settings.VAR_DIR / f"worker-{self.worker_id}.log"

    def start(self) -> TaskWorker:
        """Start the worker and wait until its heartbeat is in Redis (it is polling then)."""
        import redis

        from chat.worker import HEARTBEAT_KEY

        command = [
            sys.executable, "manage.py", "run_worker", "--queues", self.queues,
            "--interval", "0.05", "--no-startup-delay", "--worker-id", self.worker_id,
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=log
            )
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:

            def ready() -> bool:
                if self.process.poll() is not None:
                    raise RuntimeError(f"run_worker exited at start:\n{self.output()}")
                return bool(client.exists(HEARTBEAT_KEY.format(worker_id=self.worker_id)))

            wait_until(ready, timeout=30, what="the worker's first heartbeat")
        finally:
            client.close()
        return self

    def output(self) -> str:
        """The end of the worker's log (stdout and stderr)."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the worker dies mid-task, as on an out-of-memory kill or a lost machine."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (the current task finishes first); SIGKILL after `timeout`. The exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        code = self.process.returncode
        self.process = None
        self.log.unlink(missing_ok=True)
        return code

    def wait_for_result(self, result_id: str, *, timeout: float = 30.0):
        """The task result once finished (SUCCESSFUL or FAILED), read from the database."""
        from django_tasks_db.models import DBTaskResult

        def finished() -> DBTaskResult | None:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the worker exited:\n{self.output()}")
            row = DBTaskResult.objects.get(id=result_id)
            return row if row.finished_at is not None else None

        try:
            return wait_until(finished, timeout=timeout, what=f"task {result_id}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.output()}") from None
