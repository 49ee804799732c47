"""The allauth pages in a real browser: sign up, verify the email through the link in the mail,
log out, fail and succeed to log in, reset the password. No console error, no CSP violation."""

import pytest

from tests.e2e.portal_conftest import PHONE, mailed_link, screenshot, sign_up

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_signup_verify_logout_login_and_reset_password(page, live_server, django_user_model):
    page.goto(live_server.url + "/accounts/signup/")
    screenshot(page, "signup")
    sign_up(page, live_server, "browser@example.com")
    assert page.get_by_test_id("balance").inner_text() == "$0.00"
    assert django_user_model.objects.get(email="browser@example.com")

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(live_server.url + "/")
    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", "browser@example.com")
    page.fill("input[name=password]", "wrong-password-1")
    page.get_by_role("button", name="Sign In").click()
    assert page.get_by_text("not correct").is_visible()
    screenshot(page, "login-error")

    page.goto(live_server.url + "/accounts/password/reset/")
    page.fill("input[name=email]", "browser@example.com")
    page.get_by_role("button", name="Reset My Password").click()
    page.wait_for_url("**/password/reset/done/")
    page.goto(mailed_link(live_server))
    page.fill("input[name=password1]", "a-brand-new-pass-77")
    page.fill("input[name=password2]", "a-brand-new-pass-77")
    page.get_by_role("button", name="Change Password").click()
    page.wait_for_url("**/password/reset/key/done/")

    page.goto(live_server.url + "/accounts/login/")
    page.fill("input[name=login]", "browser@example.com")
    page.fill("input[name=password]", "a-brand-new-pass-77")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")


def test_pages_fit_a_phone_screen(new_page, live_server):
    phone = new_page(viewport=PHONE)
    for path in ("/", "/accounts/login/", "/accounts/signup/"):
        phone.goto(live_server.url + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    screenshot(phone, "login-phone")
