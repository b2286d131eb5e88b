"""Run background tasks: django-tasks-db's worker with a heartbeat and recovery (chat/worker.py)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.management.commands.db_worker import valid_interval, valid_max_tasks

from chat.worker import Worker, new_worker_id


class Command(BaseCommand):
    help = (
        "Run queued tasks until SIGTERM (which lets the current task finish). Workers on any "
        "machine share the queue; a dead worker's task is run again by another one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            default="*",
            help="Comma-separated queue names to run (default: all, '*').",
        )
        parser.add_argument(
            "--interval",
            type=valid_interval,
            default=1.0,
            help="Seconds to wait when the queue is empty (default: 1).",
        )
        parser.add_argument("--max-tasks", type=valid_max_tasks, default=None)
        parser.add_argument("--worker-id", default=None, help="Unique per worker (default: new).")
        parser.add_argument(
            "--no-startup-delay",
            action="store_false",
            dest="startup_delay",
            help="Start polling at once (by default up to 1 s later, against a thundering herd).",
        )

    def handle(
        self,
        *args: object,
        queues: str,
        interval: float,
        max_tasks: int | None,
        worker_id: str | None,
        startup_delay: bool,
        verbosity: int,
        **options: object,
    ) -> None:
        backend = task_backends[DEFAULT_TASK_BACKEND_ALIAS]
        if not isinstance(backend, DatabaseBackend):
            raise CommandError(
                f"TASKS_BACKEND is {type(backend).__module__}.{type(backend).__qualname__}: "
                "run that backend's own worker (for django-tasks-rq: manage.py rqworker)."
            )
        worker_id = worker_id or new_worker_id()
        if len(worker_id) > 64:
            raise CommandError("--worker-id must be at most 64 characters.")
        queue_names = [name.strip() for name in queues.split(",") if name.strip()] or ["*"]
        unknown = set(queue_names) - {"*", *backend.queues}
        if unknown:
            raise CommandError(f"Unknown queue(s): {', '.join(sorted(unknown))}.")
        if verbosity > 1:
            logging.getLogger("chat.worker").setLevel(logging.DEBUG)
        worker = Worker(
            heartbeat_seconds=settings.TASKS_WORKER_HEARTBEAT_SECONDS,
            queue_names=queue_names,
            interval=interval,
            batch=False,
            backend_name=DEFAULT_TASK_BACKEND_ALIAS,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=[],
        )
        worker.configure_signals()
        worker.run()
