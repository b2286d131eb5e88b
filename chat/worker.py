"""The task worker: django-tasks-db's Worker plus a heartbeat and recovery of dead workers' tasks.

django-tasks-db marks a task RUNNING when a worker claims it and never looks at it again: if
that worker dies (SIGKILL, out of memory, the machine lost), the task stays RUNNING forever.
Here each worker keeps a key in Redis with a short lifetime (TASKS_WORKER_HEARTBEAT_SECONDS),
refreshed by a daemon thread. A recovery sweep, run at start and then every heartbeat period
by whichever worker takes a Redis lock for that period, puts RUNNING tasks whose last worker
has no heartbeat back to READY, so another worker runs them again; after TASKS_MAX_ATTEMPTS
claims the task is marked FAILED instead (a task that kills its worker must not loop). The
same sweep re-enqueues budget alerts a crash left pending with no task to deliver them
(budgets.tasks.alerts_redeliver_stuck).

So a task may run more than once: every task must be idempotent (re-running one that already
took effect does nothing more), and may look at `context.attempt` to know it is a retry.

SIGTERM or SIGINT lets the current task finish, then exits; a second one exits at once,
leaving the task to the sweep (the heartbeat is removed first, so no need to wait for it to
expire).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from datetime import timedelta
from types import FrameType

import redis
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker as DatabaseWorker
from django_tasks_db.models import DBTaskResult

from budgets.tasks import alerts_redeliver_stuck

logger = logging.getLogger(__name__)

HEARTBEAT_KEY = "chat:tasks:worker:{worker_id}"
SWEEP_LOCK_KEY = "chat:tasks:sweep"


class WorkerLost(Exception):
    """The worker running a task died too many times while running it."""


def new_worker_id() -> str:
    """A worker id unique across machines: host, pid and a random suffix (at most 64 chars)."""
    host = socket.gethostname()[:32]
    return f"{host}-{os.getpid()}-{get_random_string(8)}"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=5)


def workers_alive(client: redis.Redis, worker_ids: list[str]) -> set[str]:
    """The worker ids among these whose heartbeat key still exists."""
    if not worker_ids:
        return set()
    keys = [HEARTBEAT_KEY.format(worker_id=worker_id) for worker_id in worker_ids]
    found = client.mget(keys)
    return {worker_id for worker_id, value in zip(worker_ids, found, strict=True) if value}


def tasks_recover(*, client: redis.Redis, grace: float) -> tuple[int, int]:
    """Requeue RUNNING tasks whose worker is gone (or fail them past the attempt limit).

    Only tasks claimed more than `grace` seconds ago are considered, so a claim and its worker's
    first heartbeat never race. Each row is changed only if it is still the same claim (status
    and started_at unchanged), so a task that finished meanwhile is left alone.
    Returns (requeued, failed).
    """
    cutoff = timezone.now() - timedelta(seconds=grace)
    running = list(
        DBTaskResult.objects.running()
        .filter(started_at__lt=cutoff)
        .values_list("id", "started_at", "worker_ids")
    )
    last_workers = [worker_ids[-1] for _, _, worker_ids in running if worker_ids]
    alive = workers_alive(client, sorted(set(last_workers)))
    requeued = failed = 0
    for task_id, started_at, worker_ids in running:
        if worker_ids and worker_ids[-1] in alive:
            continue
        same_claim = DBTaskResult.objects.filter(
            id=task_id, status=TaskResultStatus.RUNNING, started_at=started_at
        )
        if len(worker_ids) < settings.TASKS_MAX_ATTEMPTS:
            requeued += same_claim.update(status=TaskResultStatus.READY)
            logger.warning("task %s: its worker is gone; queued again", task_id)
            continue
        error = WorkerLost(f"The worker died while running this task, {len(worker_ids)} times.")
        failed += same_claim.update(
            status=TaskResultStatus.FAILED,
            finished_at=timezone.now(),
            exception_class_path=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
            traceback=f"{WorkerLost.__qualname__}: {error}\n",
        )
        logger.error("task %s: its worker died %d times; marked failed", task_id, len(worker_ids))
    return requeued, failed


class Worker(DatabaseWorker):
    """A database worker that proves it is alive and recovers the tasks of workers that are not."""

    def __init__(self, *, heartbeat_seconds: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.heartbeat_seconds = heartbeat_seconds
        self.redis = _redis()
        self._stopped = threading.Event()
        self.heartbeat_key = HEARTBEAT_KEY.format(worker_id=self.worker_id)

    def beat(self) -> None:
        """Refresh this worker's heartbeat key."""
        self.redis.set(self.heartbeat_key, "1", px=int(self.heartbeat_seconds * 1000))

    def sweep(self) -> None:
        """Recover dead workers' tasks, unless another worker did so this period."""
        period = int(self.heartbeat_seconds * 1000)
        if not self.redis.set(SWEEP_LOCK_KEY, self.worker_id, nx=True, px=period):
            return
        requeued, failed = tasks_recover(client=self.redis, grace=self.heartbeat_seconds)
        if requeued or failed:
            logger.info("recovery: %d task(s) queued again, %d failed", requeued, failed)
        alerts_redeliver_stuck()  # alerts a crash left with no task to deliver them

    def _keep_alive(self) -> None:
        """The daemon thread: beat three times per lifetime, sweep once per lifetime."""
        next_sweep = time.monotonic() + self.heartbeat_seconds
        while not self._stopped.wait(self.heartbeat_seconds / 3):
            try:
                self.beat()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.heartbeat_seconds
                    close_old_connections()
                    self.sweep()
            except Exception:
                # Redis or the database briefly away: try again next beat, never die.
                logger.exception("worker %s: heartbeat or recovery failed", self.worker_id)

    def shutdown(self, signum: int, frame: FrameType | None) -> None:
        if not self.running:
            # Second signal: leave now. Without a heartbeat the task is recovered by the next
            # sweep once its claim is a heartbeat period old.
            logger.warning(
                "%s again: leaving the current task to another worker", signal.strsignal(signum)
            )
            self.redis.delete(self.heartbeat_key)
            os._exit(1)
        super().shutdown(signum, frame)

    def run(self) -> None:
        self.beat()
        thread = threading.Thread(target=self._keep_alive, name="heartbeat", daemon=True)
        thread.start()
        try:
            self.sweep()
            super().run()
        finally:
            self._stopped.set()
            with contextlib.suppress(redis.RedisError):  # else it expires by itself
                self.redis.delete(self.heartbeat_key)
            logger.info("worker %s stopped", self.worker_id)
