"""The task worker: runs queued tasks, stops gracefully, and recovers tasks of dead workers."""

from __future__ import annotations

import signal
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from chat.worker import HEARTBEAT_KEY, tasks_recover
from tests.chat.slow_tasks import effect_then_hold
from tests.conftest import live_env
from tests.workers import TaskWorker, wait_until


@pytest.fixture
def client_redis():
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    yield client
    client.close()


def _running_row(*, worker_ids: list[str], age: float) -> DBTaskResult:
    """A task some worker claimed `age` seconds ago."""
    result = effect_then_hold.enqueue(key=uuid.uuid4().hex, hold_seconds=0)
    row = DBTaskResult.objects.get(id=result.id)
    row.status = TaskResultStatus.RUNNING
    row.worker_ids = worker_ids
    row.started_at = timezone.now() - timedelta(seconds=age)
    row.save()
    return row


def test_worker_runs_a_queued_task(task_worker, client_redis):
    key = uuid.uuid4().hex
    result = effect_then_hold.enqueue(key=key, hold_seconds=0)
    row = task_worker.wait_for_result(result.id)
    assert row.status == TaskResultStatus.SUCCESSFUL, row.traceback
    assert row.return_value == 1
    assert row.worker_ids == [task_worker.worker_id]


def test_killed_worker_task_runs_again_and_takes_effect_once(
    transactional_db, sandbox_server, client_redis
):
    env = {**live_env(sandbox_server), "TASKS_WORKER_HEARTBEAT_SECONDS": "1"}
    key = uuid.uuid4().hex
    first = TaskWorker(env=env).start()
    second = None
    try:
        result = effect_then_hold.enqueue(key=key, hold_seconds=120)
        wait_until(lambda: client_redis.llen(f"chat:test:{key}:attempts"), what="attempt 1")
        first.kill()
        assert DBTaskResult.objects.get(id=result.id).status == TaskResultStatus.RUNNING
        second = TaskWorker(env=env).start()
        row = second.wait_for_result(result.id, timeout=60)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert row.status == TaskResultStatus.SUCCESSFUL, row.traceback
    assert row.worker_ids == [first.worker_id, second.worker_id]
    assert client_redis.lrange(f"chat:test:{key}:attempts", 0, -1) == row.worker_ids
    assert client_redis.get(f"chat:test:{key}:effects") == "1"
    assert row.return_value == 1


def test_sigterm_lets_the_current_task_finish(transactional_db, sandbox_server, client_redis):
    key = uuid.uuid4().hex
    worker = TaskWorker(env=live_env(sandbox_server)).start()
    try:
        result = effect_then_hold.enqueue(key=key, hold_seconds=2)
        wait_until(lambda: client_redis.llen(f"chat:test:{key}:attempts"), what="the task")
        code = worker.stop(timeout=30)
    finally:
        worker.stop()
    row = DBTaskResult.objects.get(id=result.id)
    assert code == 0
    assert row.status == TaskResultStatus.SUCCESSFUL
    assert not client_redis.exists(HEARTBEAT_KEY.format(worker_id=worker.worker_id))


def test_recovery_requeues_a_dead_workers_task(db, client_redis):
    row = _running_row(worker_ids=["gone"], age=60)
    assert tasks_recover(client=client_redis, grace=5) == (1, 0)
    row.refresh_from_db()
    assert row.status == TaskResultStatus.READY
    assert row.worker_ids == ["gone"]


def test_recovery_leaves_a_live_workers_task_alone(db, client_redis):
    row = _running_row(worker_ids=["gone", "alive"], age=60)
    client_redis.set(HEARTBEAT_KEY.format(worker_id="alive"), "1", ex=30)
    try:
        assert tasks_recover(client=client_redis, grace=5) == (0, 0)
    finally:
        client_redis.delete(HEARTBEAT_KEY.format(worker_id="alive"))
    row.refresh_from_db()
    assert row.status == TaskResultStatus.RUNNING


def test_recovery_waits_out_the_grace_period_after_a_claim(db, client_redis):
    row = _running_row(worker_ids=["new"], age=1)
    assert tasks_recover(client=client_redis, grace=5) == (0, 0)
    row.refresh_from_db()
    assert row.status == TaskResultStatus.RUNNING


def test_recovery_fails_a_task_that_killed_its_worker_too_often(db, client_redis):
    row = _running_row(worker_ids=["a", "b", "c"][: settings.TASKS_MAX_ATTEMPTS], age=60)
    assert tasks_recover(client=client_redis, grace=5) == (0, 1)
    row.refresh_from_db()
    assert row.status == TaskResultStatus.FAILED
    assert row.exception_class_path == "chat.worker.WorkerLost"
    assert "died while running this task" in row.traceback


def test_run_worker_refuses_an_unknown_queue(db):
    with pytest.raises(CommandError, match="Unknown queue\\(s\\): nope"):
        call_command("run_worker", "--queues", "documents,nope")


def test_run_worker_refuses_a_backend_it_cannot_run(settings):
    # django-tasks drops its cached backends when the setting changes.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    with pytest.raises(CommandError, match="run that backend's own worker"):
        call_command("run_worker")


def test_a_second_sigterm_leaves_the_task_to_recovery(
    transactional_db, sandbox_server, client_redis
):
    key = uuid.uuid4().hex
    worker = TaskWorker(env=live_env(sandbox_server)).start()
    try:
        result = effect_then_hold.enqueue(key=key, hold_seconds=120)
        wait_until(lambda: client_redis.llen(f"chat:test:{key}:attempts"), what="the task")
        worker.process.send_signal(signal.SIGTERM)
        wait_until(lambda: "shutting down gracefully" in worker.output(), what="the first signal")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=10) == 1
    finally:
        worker.stop()
    row = DBTaskResult.objects.get(id=result.id)
    assert row.status == TaskResultStatus.RUNNING  # not failed: the sweep will queue it again
    assert not client_redis.exists(HEARTBEAT_KEY.format(worker_id=worker.worker_id))
    assert tasks_recover(client=client_redis, grace=0) == (1, 0)
