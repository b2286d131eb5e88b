"""Documents in real Chromium: upload, attach, chat twice, see what prompt caching saved."""

from __future__ import annotations

import uuid

import pytest

from tests.browser.conftest import shot, sign_up

pytestmark = pytest.mark.browser

# ~2,400 tokens: past Claude Sonnet's 1,024-token minimum, so the document is cached.
HANDBOOK = (
    "The lighthouse keeper logs the weather at dawn, noon and dusk, and trims the wick "
    "before the evening lamp is lit. "
) * 100


def test_upload_attach_chat_twice_and_see_the_cache_savings(strict_page, task_worker):
    page = strict_page  # under the real Content-Security-Policy: no inline script anywhere
    sign_up(page)
    page.click("header a:has-text('Documents')")
    # A fresh text, so nothing of it is in the sandbox's prompt cache yet.
    text = f"Keeper's handbook {uuid.uuid4().hex}.\n{HANDBOOK}"
    page.set_input_files(
        "#document-file",
        files=[{"name": "keeper-handbook.txt", "mimeType": "text/plain", "buffer": text.encode()}],
    )
    page.click("#documents button[type=submit]")
    status = page.locator("#documents .document-status[data-status=ready]")
    status.wait_for(timeout=30_000)  # read by the worker; the row polls until it is done
    assert status.inner_text().startswith("Ready")

    page.click("header button:has-text('New chat')")
    page.wait_for_selector("#composer-input")
    page.wait_for_timeout(300)  # the socket opens

    page.click("#attachments summary")
    page.click("#attachments .attach-list button:has-text('keeper-handbook.txt')")
    chip = page.locator("#attachments .chip", has_text="keeper-handbook.txt")
    chip.wait_for()
    assert page.locator("#attachments .attach-list button").count() == 0  # nothing else to attach

    page.fill("#composer-input", "sandbox-reply:20 When is the lamp lit?")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant.status-done").first.wait_for(timeout=20_000)
    first = page.locator(".msg.assistant").first.inner_text()
    assert "from the prompt cache" not in first  # the first turn writes the cache

    page.fill("#composer-input", "sandbox-reply:20 And who trims the wick?")
    page.keyboard.press("Enter")
    page.locator(".msg.assistant.status-done").nth(1).wait_for(timeout=20_000)
    second = page.locator(".msg.assistant").nth(1).locator(".msg-meta")
    second.get_by_text("tokens from the prompt cache, saved $").wait_for()
    savings = page.locator("#cache-savings")
    savings.wait_for(timeout=5_000)
    assert savings.inner_text().startswith("prompt caching saved $")
    shot(page, "documents")

    page.reload()
    page.wait_for_selector("#composer-input")
    assert page.locator("#attachments .chip").inner_text().startswith("keeper-handbook.txt")
    assert page.inner_text("#cache-savings") == savings.inner_text()  # stored, not only live
    page.click("#attachments .chip-remove")
    page.locator("#attachments .chip").wait_for(state="detached")
    offered = page.locator("#attachments .attach-list button", has_text="keeper-handbook.txt")
    assert offered.count() == 1  # attachable again
    assert page.js_errors == []
