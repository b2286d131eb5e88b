"""Batches in real Chromium, under the real CSP: start a batch, watch it finish without reload."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model

from chat.models import Document
from tests.browser.conftest import shot, sign_up
from tests.conftest import live_env
from tests.documents import make_document
from tests.workers import TaskWorker

pytestmark = pytest.mark.browser


@pytest.fixture
def batch_worker(daphne_server, sandbox_server):
    """A real worker that looks at running Message Batches twice a second."""
    env = {
        **live_env(sandbox_server),
        "TASKS_WORKER_HEARTBEAT_SECONDS": "2",
        "CHAT_BATCH_POLL_SECONDS": "0.5",
    }
    worker = TaskWorker(env=env)
    worker.start()
    yield worker
    worker.stop()


def ready_document(user, name: str, text: str) -> Document:
    return make_document(user, name, text, token_counts={"o200k_base": 12, "claude": 14})


def test_start_a_claude_batch_and_watch_it_finish(strict_page, batch_worker):
    page = strict_page
    username = sign_up(page)

    def documents() -> None:
        user = get_user_model().objects.get(username=username)
        for name in ("minutes.txt", "report.txt", "notes.txt"):
            ready_document(user, name, f"The {name} says the harbour opens at six.")

    # Playwright runs an event loop in this thread, so the ORM works in another one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(documents).result()

    page.click("header a:has-text('Batches')")
    assert page.locator("textarea[name=instruction]").input_value() == "Summarise this document."
    page.check("label:has-text('minutes.txt') input")
    page.check("label:has-text('report.txt') input")
    page.select_option("select[name=model]", "claude-sonnet-4-6")
    page.click("button:has-text('Start batch')")

    page.wait_for_url("**/batches/*/")
    assert page.get_by_text("Started a batch over 2 documents.").is_visible()
    done = page.locator(".batch-item[data-status=succeeded]")
    done.nth(1).wait_for(timeout=30_000)  # the section polls until the job has ended
    assert done.count() == 2
    titles = {done.nth(i).locator("h3").inner_text().split()[0] for i in range(2)}
    assert titles == {"minutes.txt", "report.txt"}
    page.locator(".batch-progress[data-status=ended]").wait_for()
    assert "saved $" in page.locator(".batch-cost").inner_text()
    assert page.locator("button:has-text('Cancel batch')").count() == 0
    shot(page, "batch-finished")

    page.click("text=← All batches")
    assert "2 of 2" in page.locator("#batch-list").inner_text()
    assert page.js_errors == []
