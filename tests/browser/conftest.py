"""Real Chromium (Debian's, at /usr/bin/chromium) driven by Playwright; never downloaded."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(daphne_server):
    """Chromium for one test. Function-scoped on purpose: Playwright's sync API runs an event
    loop in this thread, and Django refuses database work while one runs, so the browser
    must be gone before pytest-django flushes the test database."""
    if not CHROMIUM.exists():
        reason = "Chromium is not installed at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run the browser tests.")
        print(f"\nSKIPPING browser tests: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser, daphne_server, *, bypass_csp: bool):
    context = browser.new_context(base_url=daphne_server.url, bypass_csp=bypass_csp)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if msg.type == "error" else None,
    )
    page.js_errors = errors
    return page


@pytest.fixture
def page(daphne_server, browser):
    """A page for behaviour tests. Playwright's polling predicates are evaluated as strings,
    which the page's Content-Security-Policy forbids, so these run with CSP bypassed (which
    also makes the XSS test stricter: only sanitising can keep the page inert)."""
    page = _page(browser, daphne_server, bypass_csp=True)
    yield page
    page.context.close()


@pytest.fixture
def strict_page(daphne_server, browser):
    """A page under the real Content-Security-Policy: any violation is a JS error."""
    page = _page(browser, daphne_server, bypass_csp=False)
    yield page
    page.context.close()


SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def shot(page, name: str) -> None:
    """Save a screenshot of a main state (copied to docs/screenshots/ for the README)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def sign_up(page) -> str:
    """Create a new account through the sign-up page; returns the username."""
    username = f"user{secrets.token_hex(3)}"
    page.goto("/accounts/signup/")
    page.fill("#id_username", username)
    page.fill("#id_password1", "a long pass phrase 42")
    page.fill("#id_password2", "a long pass phrase 42")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return username
