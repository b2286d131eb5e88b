"""The chat page in real Chromium against a live Daphne and the sandbox."""

from __future__ import annotations

import pytest

from tests.browser.conftest import sign_up

pytestmark = pytest.mark.browser


def test_new_user_signs_up_and_sees_the_answer_stream(page):
    username = sign_up(page)
    assert username in page.inner_text("header")
    page.click("text=Start a new chat")
    page.wait_for_selector("#composer-input")
    page.wait_for_function("document.querySelector('#chat') && window.htmx")
    page.fill("#composer-input", "Hello from the browser")
    page.keyboard.press("Enter")

    answer = page.locator(".msg.assistant").last
    answer.locator(".msg-text").wait_for()
    # Several DOM updates before the answer ends: the text grows while it streams.
    lengths = []
    for _ in range(6):
        page.wait_for_timeout(150)
        lengths.append(len(answer.inner_text()))
        if "status-done" in (answer.get_attribute("class") or ""):
            break
    assert len({n for n in lengths if n}) >= 2, lengths
    page.wait_for_selector(".msg.assistant.status-done", timeout=20_000)
    text = page.locator(".msg.assistant .msg-text").last.inner_text()
    assert 'You asked: "Hello from the browser"' in text
    assert page.input_value("#composer-input") == ""  # accepted, so the composer cleared
    assert page.js_errors == []


def test_oversized_message_is_refused_in_the_page(page, settings):
    sign_up(page)
    page.click("text=Start a new chat")
    page.wait_for_function("window.htmx")
    page.fill("#composer-input", "x" * 32_001)
    page.keyboard.press("Enter")
    notice = page.locator("#notice")
    notice.wait_for()
    assert "the limit is 32,000" in notice.inner_text()
    assert page.locator(".msg").count() == 0
    assert page.input_value("#composer-input") == "x" * 32_001  # nothing lost
