"""Two-factor sign-in in a real browser: a staff member is made to set up an authenticator app
(MFA_REQUIRED_FOR_STAFF), activates it with a code computed from the secret the page shows,
keeps a recovery code, signs out, and signs in again with password + TOTP code; the admin's own
login form no longer lets them skip the code. No console error, no CSP violation."""

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from tests.e2e.portal_conftest import screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "staff-pass-with-mfa-7"
EMAIL = "staff@example.com"


def totp_now(secret: str) -> str:
    """The code an authenticator app shows now (RFC 6238: 30 s steps, 6 digits)."""
    import time

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


@pytest.fixture
def staff(django_user_model):
    user = django_user_model.objects.create_user(email=EMAIL, password=PASSWORD, is_staff=True)
    user.is_superuser = True
    user.save(update_fields=["is_superuser"])
    EmailAddress.objects.create(user=user, email=EMAIL, primary=True, verified=True)
    return user


def password_step(page, live_server, next_path: str = "") -> None:
    page.goto(live_server.url + "/accounts/login/" + (f"?next={next_path}" if next_path else ""))
    page.fill("input[name=login]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Sign In").click()


def test_staff_sets_up_totp_and_signs_in_with_it(page, live_server, settings, staff):
    settings.MFA_REQUIRED_FOR_STAFF = True

    # Given a staff member without a second factor: every page sends them to set one up
    # (allauth asks for the password again before adding an authenticator).
    password_step(page, live_server)
    page.wait_for_url("**/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F")
    page.goto(live_server.url + "/admin/")
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    screenshot(page, "mfa-activate")

    # When they add the secret to their app and type its code.
    secret = page.input_value("#authenticator_secret")
    assert len(secret) >= 16
    page.fill("input[name=code]", totp_now(secret))
    page.get_by_role("button", name="Activate").click()

    # Then recovery codes are shown, and the admin opens.
    page.wait_for_url("**/accounts/2fa/recovery-codes/")
    codes = page.locator("body").inner_text()
    assert "recovery" in codes.lower()
    page.goto(live_server.url + "/admin/")
    page.wait_for_url(live_server.url + "/admin/")

    # When they sign out and in again: the password alone is not enough.
    page.get_by_role("button", name="Log out").first.click()
    password_step(page, live_server)
    page.wait_for_url("**/accounts/2fa/authenticate/")
    screenshot(page, "mfa-authenticate")
    page.fill("input[name=code]", "000000" if totp_now(secret) != "000000" else "111111")
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/accounts/2fa/authenticate/")
    assert page.locator(".errorlist").first.is_visible()

    page.fill("input[name=code]", totp_now(secret))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url("**/dashboard/")
    page.goto(live_server.url + "/admin/")
    page.wait_for_url(live_server.url + "/admin/")


def test_admin_login_form_cannot_skip_the_code(page, live_server, staff):
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    TOTP.activate(staff, generate_totp_secret())

    page.goto(live_server.url + "/admin/login/?next=/admin/")
    page.fill("input[name=username]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.wait_for_url("**/accounts/login/?next=%2Fadmin%2F")
    page.goto(live_server.url + "/admin/")
    page.wait_for_url("**/admin/login/?next=/admin/")  # still signed out
