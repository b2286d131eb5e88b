"""The chat page in real Chromium against a live Daphne and the sandbox."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.browser.conftest import shot, sign_up

pytestmark = pytest.mark.browser


def test_new_user_signs_up_and_sees_the_answer_stream(strict_page):
    page = strict_page
    username = sign_up(page)
    assert username in page.inner_text("header")
    page.click("text=Start a new chat")
    page.wait_for_selector("#composer-input")
    page.wait_for_timeout(300)  # the socket opens
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
    shot(page, "streaming")
    page.wait_for_selector(".msg.assistant.status-done", timeout=20_000)
    shot(page, "answered")
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


def start_chat(page) -> None:
    sign_up(page)
    page.click("text=Start a new chat")
    page.wait_for_function("window.htmx && document.querySelector('#composer-input')")
    page.wait_for_selector("#messages")


def ask(page, text: str) -> None:
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")


def last_answer(page):
    return page.locator(".msg.assistant").last


def test_stop_keeps_the_partial_answer_and_offers_continue(page):
    start_chat(page)
    ask(page, "sandbox-reply:400 a long answer please")
    page.wait_for_selector("#stop-button")
    page.wait_for_function(
        "(document.querySelector('.msg.assistant .msg-text')?.innerText.length || 0) > 20"
    )
    page.click("#stop-button")
    page.wait_for_selector(".msg.assistant.status-stopped")
    stopped_text = last_answer(page).locator(".msg-text").inner_text()
    assert stopped_text
    page.click(".msg.assistant [data-action=continue]")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    assert last_answer(page).locator(".msg-text").inner_text().startswith(stopped_text[:20])
    assert page.js_errors == []


def test_continue_after_an_injected_mid_stream_fault(page):
    start_chat(page)
    ask(page, "sandbox-fault:error@5 tell me")
    page.wait_for_selector(".msg.assistant.status-interrupted")
    assert "overloaded" in last_answer(page).inner_text().lower()
    page.click(".msg.assistant [data-action=continue]")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    assert page.locator(".msg.assistant").count() == 1


def test_regenerate_replaces_the_answer(page):
    start_chat(page)
    ask(page, "First question")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    first_id = last_answer(page).get_attribute("id")
    page.click(".msg.assistant [data-action=regenerate]")
    page.wait_for_function(
        f"document.querySelector('.msg.assistant.status-done') &&"
        f" document.querySelector('.msg.assistant').id !== '{first_id}'",
        timeout=30_000,
    )
    assert page.locator(".msg.assistant").count() == 1
    assert page.locator(".msg.user").count() == 1


def test_model_output_with_script_and_handlers_renders_inert(page):
    start_chat(page)
    page.evaluate("window.__pwned = 0")
    hostile = (
        '<script>window.__pwned=1</script> <img src=x onerror="window.__pwned=2"> '
        "[click](javascript:window.__pwned=3)"
    )
    ask(page, hostile)  # the sandbox echoes it back in the answer
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    answer = last_answer(page)
    assert answer.locator("script").count() == 0
    assert answer.locator("img").count() == 0
    assert answer.locator("a[href^='javascript']").count() == 0
    assert "<script>" in answer.inner_text()  # shown as text
    assert page.evaluate("window.__pwned") == 0


def test_two_tabs_both_stream(page, browser, daphne_server):
    start_chat(page)
    second = page.context.new_page()
    second.goto(page.url)
    second.wait_for_function("window.htmx && document.querySelector('#messages')")
    second.wait_for_timeout(300)  # its socket is open
    ask(page, "sandbox-reply:120 both tabs")
    second.wait_for_selector(".msg.assistant.status-streaming", timeout=10_000)
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    second.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    first_text = last_answer(page).locator(".msg-text").inner_text()
    assert last_answer(second).locator(".msg-text").inner_text() == first_text


def test_reload_mid_answer_shows_the_text_so_far_then_the_rest(page):
    start_chat(page)
    ask(page, "sandbox-reply:300 keep streaming")
    page.wait_for_function(
        "(document.querySelector('.msg.assistant .msg-text')?.innerText.length || 0) > 30"
    )
    page.reload()
    page.wait_for_selector(".msg.assistant.status-streaming", timeout=10_000)
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    text = last_answer(page).locator(".msg-text").inner_text()
    assert text.startswith('You asked: "sandbox-reply:300 keep streaming"')
    assert text.count("You asked:") == 1  # nothing repeated


def test_the_page_resyncs_when_its_socket_reconnects_mid_answer(page):
    start_chat(page)
    ask(page, "sandbox-reply:300 survive a drop")
    page.wait_for_function(
        "(document.querySelector('.msg.assistant .msg-text')?.innerText.length || 0) > 30"
    )
    # Browsers cannot send the abnormal close codes (1006, 1012) after which htmx's ws
    # extension reconnects by itself, so close the socket and run that same reconnect.
    wrapper = "htmx.find('#chat')['htmx-internal-data'].webSocket"
    page.evaluate(f"{wrapper}.socket.close(4000)")
    page.wait_for_timeout(500)  # tokens stream on while the page is away
    page.evaluate(f"{wrapper}.init()")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    text = last_answer(page).locator(".msg-text").inner_text()
    assert text.startswith('You asked: "sandbox-reply:300 survive a drop"')
    assert text.count("You asked:") == 1  # nothing lost, nothing repeated


def in_thread(function, *args, **kwargs):
    """Run database work off Playwright's thread (its event loop makes Django refuse)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def set_daily_tokens(username: str, tokens: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from budgets.models import Plan
    from budgets.services.quotas import quota_update

    user = get_user_model().objects.get(username=username)
    plan = Plan.objects.create(
        name=f"small-{username}", daily_tokens=tokens, requests_per_minute=100,
        concurrent_streams=5, max_output_tokens=4096,
    )  # fmt: skip
    quota_update(user_id=user.id, plan=plan)
    connection.close()


def test_retry_waits_are_shown_while_the_provider_is_overloaded(page):
    start_chat(page)
    ask(page, "sandbox-fault:529x2 are you there?")
    notice = page.locator(".msg.assistant .msg-notice")
    notice.filter(has_text="Claude is overloaded, retrying in").wait_for(timeout=10_000)
    assert "attempt 2 of 4" in notice.inner_text()
    shot(page, "retrying")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    assert "2 retries" in last_answer(page).inner_text()


def test_budget_warning_then_refusal_with_the_reset_time(page):
    username = sign_up(page)
    in_thread(set_daily_tokens, username, 330)
    page.click("text=Start a new chat")
    page.wait_for_selector("#composer-input")
    page.wait_for_timeout(300)
    page.select_option("#length-select", "short")
    ask(page, "sandbox-reply:400 use most of it")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    warning = page.locator(".budget-meter-warning")
    warning.wait_for(timeout=5_000)
    assert "of today's budget" in warning.inner_text()
    ask(page, "One more?")
    notice = page.locator("#notice")
    notice.filter(has_text="resets").wait_for(timeout=5_000)
    shot(page, "budget-refused")
    assert page.locator(".msg").count() == 2  # nothing stored for the refused message
    assert page.input_value("#composer-input") == "One more?"  # and nothing lost


@pytest.mark.parametrize(("width", "height", "scheme"), [(390, 844, "dark"), (1280, 800, "dark")])
def test_the_page_fits_phone_and_desktop_widths_in_dark_mode(page, width, height, scheme):
    page.set_viewport_size({"width": width, "height": height})
    page.emulate_media(color_scheme=scheme)
    start_chat(page)
    ask(page, "Show me a list and some `code`")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    overflow = page.evaluate(
        "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow <= 0  # no sideways scrolling
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(21, 23, 27)"  # the dark palette follows the system setting
    assert page.locator("#composer-input").is_visible()
    shot(page, f"{'phone' if width < 600 else 'desktop'}-{scheme}")


def test_keyboard_alone_can_send_a_message(page):
    start_chat(page)
    page.focus("#composer-input")
    page.keyboard.type("Typed without a mouse")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("second line")
    assert page.input_value("#composer-input") == "Typed without a mouse\nsecond line"
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg.assistant.status-done", timeout=30_000)
    assert "second line" in page.locator(".msg.user").last.inner_text()
