"""Batch jobs under real `manage.py run_worker` processes: polling, and a worker killed mid-job."""

from __future__ import annotations

import pytest
from django_tasks_db.models import DBTaskResult

from budgets.models import UsageRecord
from budgets.services import budget_state_sync
from chat.models import BatchItem, BatchJob
from chat.services.batch_accounting import request_id_of
from chat.services.batches import batch_job_create
from tests.chat.test_batches import set_plan
from tests.conftest import live_env
from tests.documents import make_document
from tests.workers import TaskWorker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def ended(job: BatchJob) -> bool:
    return BatchJob.objects.filter(pk=job.pk, status=BatchJob.Status.ENDED).exists()


def test_a_real_worker_runs_a_claude_batch_polling_by_re_enqueueing(
    providers, user, sandbox_server
):
    set_plan(user)
    docs = [make_document(user, f"w{i}.txt", f"Worker text {i}.") for i in range(2)]
    env = {
        **live_env(sandbox_server),
        "TASKS_WORKER_HEARTBEAT_SECONDS": "2",
        "CHAT_BATCH_POLL_SECONDS": "0.3",
    }
    worker = TaskWorker(env=env).start()
    try:
        job = batch_job_create(
            user_id=user.id,
            model="claude-sonnet-4-6",
            document_ids=[d.pk for d in docs],
            instruction="Sum.",
        )
        wait_until(lambda: ended(job), timeout=60, what=f"the batch to end\n{worker.output()}")
    finally:
        worker.stop()
    job.refresh_from_db()
    assert job.succeeded_count == 2
    assert DBTaskResult.objects.filter(queue_name="batches").count() >= 2  # it polled
    assert UsageRecord.objects.filter(user=user, batch=True).count() == 2
    assert budget_state_sync(user_id=user.id).reserved_tokens == 0


def test_a_worker_killed_mid_job_is_replaced_and_every_item_is_charged_once(
    providers, user, slow_sandbox
):
    """GPT items paced at 60 tokens a second, 2 s each: the worker dies during the second."""
    set_plan(user)
    docs = [make_document(user, f"k{i}.txt", f"Kill test {i}. sandbox-reply:120") for i in range(3)]
    env = {
        **live_env(slow_sandbox),
        "TASKS_WORKER_HEARTBEAT_SECONDS": "1",
        "CHAT_BATCH_LEASE_SECONDS": "3",
    }
    first = TaskWorker(env=env).start()
    second = None
    try:
        job = batch_job_create(
            user_id=user.id,
            model="gpt-4o-mini",
            document_ids=[d.pk for d in docs],
            instruction="Go.",
        )
        done = BatchItem.objects.filter(job=job, settled_at__isnull=False)
        wait_until(done.exists, timeout=30, what=f"the first item\n{first.output()}")
        first.kill()
        assert done.count() < 3
        second = TaskWorker(env=env).start()
        wait_until(lambda: ended(job), timeout=90, what=f"the job to end\n{second.output()}")
    finally:
        first.stop()
        if second is not None:
            second.stop()
    rerun = DBTaskResult.objects.filter(queue_name="batches").order_by("enqueued_at").first()
    assert rerun.worker_ids == [first.worker_id, second.worker_id]  # the same task, run again
    items = list(BatchItem.objects.filter(job=job))
    assert {i.status for i in items} == {BatchItem.Status.SUCCEEDED}
    records = UsageRecord.objects.filter(user=user)
    assert sorted(r.request_id for r in records) == sorted(request_id_of(i) for i in items)
    state = budget_state_sync(user_id=user.id)
    assert state.tokens_used == sum(r.total_tokens for r in records)
    assert state.cost_used_micros == sum(i.cost_micros for i in items)
    assert state.reserved_tokens == 0
