"""Tasks for the worker tests, importable by a worker subprocess (cwd: the repository root)."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django_tasks import TaskContext, task

# Count the effect only the first time this task id applies it: marker and count in one step.
_APPLY_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return redis.call('INCR', KEYS[2])
end
return tonumber(redis.call('GET', KEYS[2]))
"""


@task(takes_context=True)
def effect_then_hold(context: TaskContext, key: str, hold_seconds: float) -> int:
    """Apply an effect once per task (idempotently), note the attempt, then hold on attempt 1."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        keys = [f"chat:test:{key}:done", f"chat:test:{key}:effects"]
        effects = client.eval(_APPLY_ONCE, 2, *keys, context.task_result.id)
        client.rpush(f"chat:test:{key}:attempts", context.task_result.worker_ids[-1])
        if context.attempt == 1:
            time.sleep(hold_seconds)
        return int(effects)
    finally:
        client.close()
