"""Personal API keys with scopes and an expiry: 403 naming the missing scope, 401 once expired,
keys from before scopes keep full access."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import ApiKey, all_scopes
from apps.accounts.scopes import area_of, missing_scope
from apps.accounts.services import api_key_create

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_new_key_defaults_to_every_scope_and_no_expiry(api_client, user):
    api_client.force_authenticate(user)
    body = api_client.post("/api/v1/auth/api-keys", {"name": "ci"}, format="json").json()
    assert body["scopes"] == all_scopes() and body["expires_at"] is None
    assert body["key"].startswith("gco_")


def test_create_with_scopes_and_expiry_through_the_api(api_client, user):
    api_client.force_authenticate(user)
    expires = (timezone.now() + timedelta(days=30)).isoformat()
    body = api_client.post(
        "/api/v1/auth/api-keys",
        {"name": "ci", "scopes": ["pods", "read"], "expires_at": expires},
        format="json",
    ).json()
    assert body["scopes"] == ["read", "pods"]  # in canonical order
    key = ApiKey.objects.get(pk=body["id"])
    assert key.expires_at is not None and key.scopes == ["read", "pods"]
    listing = api_client.get("/api/v1/auth/api-keys").json()
    assert "key" not in listing[0] and listing[0]["scopes"] == ["read", "pods"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scopes": ["pods", "root"]}, "scopes[1]"),
        ({"scopes": []}, "scopes"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ],
)
def test_bad_scopes_or_expiry_are_400_and_create_nothing(api_client, user, payload, field):
    api_client.force_authenticate(user)
    response = api_client.post("/api/v1/auth/api-keys", {"name": "x", **payload}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not ApiKey.objects.exists()


def test_key_outside_its_scope_gets_403_naming_the_scope(api_client, user):
    raw = api_key_create(user=user, name="billing-only", scopes=["billing"]).raw_key

    pods = api_client.get("/api/v1/pods/", **bearer(raw))
    assert pods.status_code == 403
    assert pods.json()["error"] == {
        "status": 403,
        "code": "insufficient_scope",
        "message": "this API key lacks the 'read' scope",
    }
    create = api_client.post("/api/v1/pods/", {}, format="json", **bearer(raw))
    assert create.status_code == 403
    assert create.json()["error"]["message"] == "this API key lacks the 'pods' scope"
    assert api_client.get("/api/v1/users/balance", **bearer(raw)).status_code == 200


def test_read_scope_allows_every_get_and_no_write(api_client, user):
    raw = api_key_create(user=user, name="dashboards", scopes=["read"]).raw_key

    assert api_client.get("/api/v1/pods/", **bearer(raw)).status_code == 200
    assert api_client.get("/api/v1/users/balance", **bearer(raw)).status_code == 200
    assert api_client.get("/api/v1/models/deployments", **bearer(raw)).status_code == 200
    deploy = api_client.post("/api/v1/models/deployments", {}, format="json", **bearer(raw))
    assert deploy.status_code == 403
    assert deploy.json()["error"]["message"] == "this API key lacks the 'models' scope"


def test_a_narrow_key_cannot_mint_a_wider_one(api_client, user):
    raw = api_key_create(user=user, name="pods", scopes=["read", "pods"]).raw_key
    response = api_client.post("/api/v1/auth/api-keys", {"name": "escalate"}, **bearer(raw))
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "this API key lacks the 'models' scope"
    assert ApiKey.objects.count() == 1


def test_scope_with_the_pods_area_passes_into_the_view(api_client, user):
    raw = api_key_create(user=user, name="pods", scopes=["pods"]).raw_key
    assert api_client.get("/api/v1/pods/", **bearer(raw)).status_code == 200
    bad = api_client.post("/api/v1/pods/", {}, format="json", **bearer(raw))
    assert bad.status_code == 400  # past the scope check: the view validates the body


def test_expired_key_gets_401(api_client, user):
    created = api_key_create(
        user=user, name="short", expires_at=timezone.now() + timedelta(hours=1)
    )
    raw = created.raw_key
    assert api_client.get("/api/v1/auth/me", **bearer(raw)).status_code == 200
    ApiKey.objects.filter(pk=created.api_key.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    response = api_client.get("/api/v1/auth/me", HTTP_X_API_KEY=raw)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "api_key_expired"
    assert "expired" in response.json()["error"]["message"]


def test_other_users_key_never_sees_the_owners_key_list(api_client, user, other_user):
    api_key_create(user=user, name="mine")
    raw = api_key_create(user=other_user, name="theirs", scopes=["read"]).raw_key
    listing = api_client.get("/api/v1/auth/api-keys", **bearer(raw)).json()
    assert [k["name"] for k in listing] == ["theirs"]


def test_anonymous_still_gets_401(api_client):
    assert api_client.get("/api/v1/pods/").status_code == 401


def test_scope_rules():
    assert missing_scope(["read"], area="pods", method="GET") == ""
    assert missing_scope(["pods"], area="pods", method="GET") == ""
    assert missing_scope(["models"], area="pods", method="HEAD") == "read"
    assert missing_scope(["read", "models"], area="pods", method="DELETE") == "pods"
    assert missing_scope(all_scopes(), area="*", method="POST") == ""
    assert missing_scope(["read", "pods", "models"], area="*", method="POST") == "billing"
    assert missing_scope([], area=None, method="POST") == ""


def test_every_api_view_has_an_area():
    """Every /api/v1 view resolves to a scope, FULL, or public: none is left unguarded."""
    from django.urls import get_resolver

    def views(patterns, prefix=""):
        for p in patterns:
            if hasattr(p, "url_patterns"):
                yield from views(p.url_patterns, prefix + str(p.pattern))
            elif (prefix + str(p.pattern)).startswith("api/v1/"):
                view_class = getattr(p.callback, "view_class", None)
                if view_class is not None:
                    yield view_class()

    areas = {type(v).__name__: area_of(v) for v in views(get_resolver().url_patterns)}
    assert areas["PodListView"] == "pods"
    assert areas["BalanceView"] == "billing"
    assert areas["DeploymentListView"] == "models"
    assert areas["ApiKeyListView"] == "*"
    assert areas["LoginView"] is None


def test_views_with_their_own_permission_classes_are_scoped_too(api_client, user):
    """Providers' views replace the default permission classes; the scope still applies."""
    raw = api_key_create(user=user, name="pods", scopes=["pods"]).raw_key
    response = api_client.get("/api/v1/providers/me", **bearer(raw))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"
    register = api_client.post(
        "/api/v1/providers/register", {"display_name": "x"}, format="json", **bearer(raw)
    )
    assert register.json()["error"]["message"] == "this API key lacks the 'billing' scope"
