"""Edge protection: security headers, body limits, content types, strict input."""

import pytest

from apps.accounts.models import User

pytestmark = pytest.mark.django_db


def test_security_headers_on_html_and_json(client):
    for response in (client.get("/"), client.get("/api/v1/auth/me"), client.get("/healthz")):
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert response["Referrer-Policy"] == "strict-origin-when-cross-origin"
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp


def test_docs_page_serves_locally_under_csp(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"cdn" not in response.content.lower()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/v1/auth/login" in schema.json()["paths"]


def test_malformed_json_is_400_with_message(client):
    response = client.post(
        "/api/v1/auth/register", data='{"email": "a@example.com",', content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["error"]["message"]
    assert User.objects.count() == 0


def test_wrong_content_type_is_415(client):
    response = client.post(
        "/api/v1/auth/register",
        data="email=a@example.com&password=correct-horse-battery-9",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["error"]["message"]
    assert User.objects.count() == 0


def test_oversized_body_is_413(client, settings):
    settings.MAX_REQUEST_BODY_BYTES = 1024
    body = '{"email": "a@example.com", "password": "' + "x" * 2048 + '"}'
    response = client.post("/api/v1/auth/register", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "limit is 1024 bytes" in response.json()["error"]["message"]
    assert User.objects.count() == 0


def test_unknown_fields_are_400_naming_them(client):
    response = client.post(
        "/api/v1/auth/register",
        data={"email": "a@example.com", "password": "correct-horse-battery-9", "is_staff": True},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"is_staff": "Unknown field."}
    assert User.objects.count() == 0


def test_json_array_instead_of_object_is_400(client):
    response = client.post("/api/v1/auth/login", data="[1, 2]", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_unknown_api_path_is_json_404(client):
    response = client.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("value", [0, 12.5, True, ["a"], {"a": 1}])
def test_a_number_where_a_string_is_required_is_400(client, user, value):
    client.force_login(user)

    response = client.post(
        "/api/v1/auth/api-keys", data={"name": value}, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"name": "Not a valid string."}
    assert user.api_keys.count() == 0
