"""SQL and script payloads are data: stored and returned verbatim, escaped in HTML, and never
break a query. (There is deliberately no pattern blocking: prompts contain such text.)"""

import pytest

from apps.accounts.models import ApiKey, User

pytestmark = pytest.mark.django_db

PAYLOADS = [
    "Robert'); DROP TABLE accounts_user;--",
    "<script>alert('x')</script>",
    '" OR 1=1 --',
    "'; SELECT pg_sleep(5); --",
    "<img src=x onerror=alert(1)>",
    "%00\\x00 UNION SELECT password FROM accounts_user",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_every_auth_string_field(api_client, admin_client, payload):
    email = "o'hara+drop-table@example.com"
    password = payload + "-Long-Enough-9"
    registered = api_client.post(
        "/api/v1/auth/register",
        {"email": email, "password": password, "name": payload},
        format="json",
    )
    assert registered.status_code == 201, registered.json()
    assert registered.json()["user"]["name"] == payload
    assert User.objects.get(email=email).name == payload

    login = api_client.post(
        "/api/v1/auth/login", {"email": email, "password": password}, format="json"
    )
    assert login.status_code == 200
    token = login.json()["access_token"]
    me = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert me.json()["name"] == payload

    key = api_client.post(
        "/api/v1/auth/api-keys",
        {"name": payload},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert key.status_code == 201 and key.json()["name"] == payload
    assert ApiKey.objects.get(pk=key.json()["id"]).name == payload

    wrong = api_client.post(
        "/api/v1/auth/login", {"email": email, "password": payload}, format="json"
    )
    assert wrong.status_code == 401, wrong.json()
    assert User.objects.count() == 2  # the admin and this user: no table was harmed

    page = admin_client.get("/admin/accounts/apikey/").content.decode()
    if "<" in payload:
        assert payload not in page
    from django.utils.html import escape

    assert escape(payload) in page
