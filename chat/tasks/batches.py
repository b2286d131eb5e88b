"""The batch job task: one step of a job, then itself again later while the job runs."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from django_tasks import task

from chat.services.batch_runs import batch_job_step


@task(queue_name="batches")
async def batch_job_run(job_id: str) -> None:
    """Advance a batch job; while it is not done, enqueue this task again for its next look."""
    wait = await batch_job_step(job_id=job_id)
    if wait is not None:
        later = timezone.now() + dt.timedelta(seconds=wait)
        await batch_job_run.using(run_after=later).aenqueue(job_id)
