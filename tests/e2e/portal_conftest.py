"""Browser fixtures for the portal tests: a real Chromium (Debian's, driven by Playwright) and
a `page` that fails the test on any console error, uncaught exception or CSP violation.

Imported by tests/e2e/conftest.py, so every e2e test can ask for `browser`, `page`,
`new_page` (more pages, e.g. a second persona or a phone-width one), `browser_guard` and the
`screenshot` helper. Tests that use them skip, saying why, when Playwright or Chromium is
missing."""

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core import mail

ROOT = Path(__file__).resolve().parents[2]
# The README's screenshots are refreshed with UPDATE_SCREENSHOTS=1; other runs still take them
# (a page that cannot render fails) but leave the checkout clean.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "gco-screenshots"
)
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}

# Installed before any page script: CSP violations are reported to the test even when the
# browser would not log them (e.g. a blocked style attribute set by a library).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__gcoReportCsp(
    e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " +
    e.sourceFile + ":" + e.lineNumber + " (" + document.location.pathname + ")");
});
"""


@dataclass
class BrowserGuard:
    """What went wrong in the browser during a test; `check()` fails the test on any of it."""

    problems: list[str] = field(default_factory=list)
    # Console errors a test expects (regexes), e.g. a deliberate 404 it navigates to.
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def record(self, kind: str, text: str) -> None:
        if not any(p.search(text) for p in self.allowed):
            self.problems.append(f"{kind}: {text}")

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def check(self) -> None:
        problems, self.problems = self.problems, []
        assert not problems, "browser reported problems:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    # Playwright's sync API keeps an asyncio loop running on this thread while it is started;
    # Django's ORM, used by the test body between browser steps, refuses to run where a loop
    # runs unless told it is safe (it is: the loop only drives the browser's pipe, never our
    # database connection). Module scope: both end with the module, so the rest of the
    # session (and `check --deploy` in a subprocess) never sees either.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def browser_guard() -> BrowserGuard:
    return BrowserGuard()


@pytest.fixture
def new_page(browser, browser_guard) -> Iterator[Callable[..., Any]]:
    """Open a guarded page in a fresh context (own cookies): `new_page(viewport=PHONE)`."""
    contexts: list[Any] = []

    def open_page(viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(viewport=viewport or DESKTOP, locale="en-US")
        context.set_default_timeout(20_000)
        context.expose_binding(
            "__gcoReportCsp", lambda _source, text: browser_guard.record("CSP violation", text)
        )
        context.add_init_script(CSP_LISTENER)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                browser_guard.record(
                    f"console.{message.type}", f"{message.text} ({message.location.get('url')})"
                )
                if message.type in ("error", "assert")
                else None
            ),
        )
        page.on("pageerror", lambda error: browser_guard.record("uncaught exception", str(error)))
        page.on("dialog", lambda dialog: dialog.accept())
        return page

    yield open_page
    for context in contexts:
        context.close()
    browser_guard.check()


@pytest.fixture
def page(new_page) -> Any:
    return new_page()


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save the page as <name>.png under SCREENSHOTS (docs/screenshots with
    UPDATE_SCREENSHOTS=1: the README links them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


# --- Helpers of the portal's e2e tests (signing up, the admin) ---------------------------

PASSWORD = "correct-horse-battery-9"


def mailed_link(live_server) -> str:
    match = re.search(r"https?://[^/\s]+(/\S+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return live_server.url + match.group(1)


def sign_up(page, live_server, email: str) -> None:
    """Sign up and confirm the address; leaves the page on the dashboard, logged in."""
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="Sign up").first.click()
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url("**/accounts/confirm-email/**")
    page.goto(mailed_link(live_server))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/dashboard/")


OPERATOR_PASSWORD = "operator-pass-2026"


def admin_login(page, live_server) -> None:
    page.goto(live_server.url + "/admin/")
    page.fill("input[name=username]", "ops@example.com")
    page.fill("input[name=password]", OPERATOR_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server.url + "/admin/")


def run_action(page, label: str, row_text: str) -> None:
    page.locator("#result_list tr", has_text=row_text).locator("input.action-select").check()
    page.select_option("select[name=action]", label=label)
    page.get_by_role("button", name="Go").click()
