"""MFA_REQUIRED_FOR_STAFF: staff sessions without an authenticator reach only the account
pages; customers, API keys and staff with an authenticator are unaffected."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from apps.accounts.services import api_key_create

pytestmark = pytest.mark.django_db

ACTIVATE = "/accounts/2fa/totp/activate/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        email="ops@example.com", password="ops-pass-12345", is_staff=True
    )


@pytest.fixture
def required(settings):
    settings.MFA_REQUIRED_FOR_STAFF = True
    return settings


def test_staff_without_mfa_is_sent_to_set_it_up(client, staff, required):
    client.force_login(staff)
    for path in ("/dashboard/", "/admin/", "/pods/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == ACTIVATE, path
    api = client.get("/api/v1/auth/me")
    assert api.status_code == 403 and api.json()["error"]["code"] == "mfa_required"
    assert client.get("/accounts/2fa/").status_code == 200  # the setup pages stay reachable


def test_staff_with_mfa_and_customers_pass(client, staff, user, required):
    TOTP.activate(staff, generate_totp_secret())
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200
    client.force_login(user)
    assert client.get("/dashboard/").status_code == 200


def test_api_keys_of_staff_are_not_sessions(api_client, staff, required):
    raw = api_key_create(user=staff, name="ci").raw_key
    response = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200


def test_off_by_default(client, staff):
    client.force_login(staff)
    assert client.get("/admin/").status_code == 200


def test_a_recovery_code_signs_in_once(client, staff):
    from allauth.account.models import EmailAddress
    from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes

    EmailAddress.objects.create(user=staff, email=staff.email, primary=True, verified=True)
    TOTP.activate(staff, generate_totp_secret())
    code = RecoveryCodes.activate(staff).get_unused_codes()[0]

    def sign_in(second_factor: str):
        client.logout()
        step = client.post("/accounts/login/", {"login": staff.email, "password": "ops-pass-12345"})
        assert step["Location"] == "/accounts/2fa/authenticate/"
        return client.post("/accounts/2fa/authenticate/", {"code": second_factor})

    first = sign_in(code)
    assert first.status_code == 302 and first["Location"] == "/dashboard/"
    again = sign_in(code)
    assert again.status_code == 200 and "Incorrect code" in again.content.decode()
