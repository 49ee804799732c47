"""The browser guard itself: a page that breaks the CSP or throws is caught, so the portal
tests' silence means something."""

import pytest

from apps.core.middleware import STRICT_CSP

pytestmark = [pytest.mark.e2e]

BAD_PAGE = """<!doctype html><html><head><title>probe</title>
<style>body { color: red; }</style></head>
<body><p style="color: blue">inline style attribute</p>
<script>window.ranInline = true;</script></body></html>"""


def test_csp_violations_and_script_errors_are_reported(page, browser_guard):
    def serve(route):
        route.fulfill(
            status=200,
            content_type="text/html",
            headers={"Content-Security-Policy": STRICT_CSP},
            body=BAD_PAGE,
        )

    page.route("http://probe.test/**", serve)
    page.goto("http://probe.test/page")
    page.wait_for_function("document.readyState === 'complete'")
    assert page.evaluate("window.ranInline === undefined")  # the inline script was blocked
    with page.expect_event("pageerror"):
        page.evaluate("setTimeout(() => { throw new Error('boom from the page'); }, 0)")

    problems = "\n".join(browser_guard.problems)
    browser_guard.problems.clear()  # expected here: the fixture's final check must pass
    assert "CSP violation: style-src-elem blocked inline" in problems
    assert "CSP violation: style-src-attr blocked inline" in problems
    assert "CSP violation: script-src-elem blocked inline" in problems
    assert "uncaught exception: boom from the page" in problems
    assert "console.error" in problems  # Chromium also logs each refusal
