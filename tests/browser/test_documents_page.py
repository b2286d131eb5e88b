"""The documents page in real Chromium under the real CSP: refusals, a PDF read, delete."""

from __future__ import annotations

import pytest

from tests.browser.conftest import shot, sign_up
from tests.pdfs import pdf_with_text

pytestmark = pytest.mark.browser


def choose(page, name: str, data: bytes, mime: str) -> None:
    page.set_input_files("#document-file", files=[{"name": name, "mimeType": mime, "buffer": data}])
    page.click("#documents button[type=submit]")


def test_refusal_then_a_pdf_read_in_the_background_then_deleted(strict_page, task_worker):
    page = strict_page
    sign_up(page)
    page.click("header a:has-text('Documents')")
    page.wait_for_selector("#documents")

    choose(page, "notes.pdf", b"only some plain notes", "application/pdf")
    alert = page.locator("#upload-error")
    alert.wait_for()
    assert "is named .pdf but holds plain text" in alert.inner_text()
    assert page.locator("#documents tbody tr").count() == 0

    pages = [f"Chapter {n}: the keeper trims the wick at dusk." for n in range(1, 4)]
    choose(page, "keeper.pdf", pdf_with_text(pages), "application/pdf")
    row = page.locator("#documents tbody tr", has_text="keeper.pdf")
    row.wait_for()
    assert page.locator("#upload-error").count() == 0  # the form came back clean
    ready = page.locator("#documents .document-status[data-status=ready]")
    ready.wait_for(timeout=30_000)  # the row polls until the worker is done
    assert ready.inner_text().startswith("Ready · 3 pages")
    assert "GPT-4o" in row.inner_text()
    assert row.get_attribute("hx-trigger") is None  # polling stopped
    shot(page, "documents-page")

    row.locator("a:has-text('Delete')").click()
    page.click("button:has-text('Delete')")
    page.wait_for_selector("text=Deleted “keeper.pdf”.")
    assert page.locator("#documents tbody tr").count() == 0
    assert page.js_errors == []
