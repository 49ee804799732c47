"""Personal API keys: create → use → revoke; the raw key is never stored."""

import pytest

from apps.accounts.models import ApiKey
from tests.support import all_database_text

pytestmark = pytest.mark.django_db


def create_key(client, name="ci"):
    response = client.post("/api/v1/auth/api-keys", {"name": name}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_create_use_revoke(owner_client, api_client, user):
    created = create_key(owner_client)
    raw = created["key"]
    assert raw.startswith("gco_") and created["prefix"] == raw[: len(created["prefix"])]
    api_client.force_authenticate(None)

    by_bearer = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    by_header = api_client.get("/api/v1/auth/me", HTTP_X_API_KEY=raw)
    assert by_bearer.status_code == 200 and by_bearer.json()["email"] == user.email
    assert by_header.status_code == 200
    assert ApiKey.objects.get(pk=created["id"]).last_used_at is not None

    api_client.force_authenticate(user)
    listing = api_client.get("/api/v1/auth/api-keys").json()
    assert [k["id"] for k in listing] == [created["id"]]
    assert "key" not in listing[0]
    assert api_client.delete(f"/api/v1/auth/api-keys/{created['id']}").status_code == 204
    api_client.force_authenticate(None)

    revoked = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert revoked.status_code == 401
    assert revoked.json()["error"]["message"] == "Invalid or revoked API key."


def test_raw_key_is_nowhere_in_the_database(owner_client):
    raw = create_key(owner_client)["key"]
    assert raw not in all_database_text()
    assert raw[len("gco_") + 8 :] not in all_database_text()


def test_other_tenant_cannot_revoke_and_anonymous_cannot_list(owner_client, api_client, other_user):
    created = create_key(owner_client)
    api_client.force_authenticate(other_user)
    assert api_client.delete(f"/api/v1/auth/api-keys/{created['id']}").status_code == 404
    assert api_client.get("/api/v1/auth/api-keys").json() == []
    api_client.force_authenticate(None)
    assert api_client.get("/api/v1/auth/api-keys").status_code == 401
    assert ApiKey.objects.get(pk=created["id"]).revoked_at is None


def test_unknown_key_is_401(api_client):
    response = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION="Bearer gco_not-a-real-key")
    assert response.status_code == 401
