"""Background tasks (Django's Tasks API), one module per topic; `manage.py run_worker` runs them.

Every task must be idempotent: a task whose worker died runs again (chat/worker.py).
"""
