"""POST /api/v1/auth/register, /login and GET /me: JWTs, expiry, tampering."""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.core import mail

from apps.accounts.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"


def register(api_client, email="new@example.com", **extra):
    return api_client.post(
        "/api/v1/auth/register", {"email": email, "password": PASSWORD, **extra}, format="json"
    )


def test_register_creates_user_sends_verification_and_returns_token(api_client):
    response = register(api_client, name="Ada")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["user"]["email"] == "new@example.com"
    assert body["user"]["email_verified"] is False
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 24 * 3600
    assert len(mail.outbox) == 1 and "new@example.com" in mail.outbox[0].to
    me = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")
    assert me.status_code == 200 and me.json()["name"] == "Ada"


def test_register_twice_is_400_naming_email(api_client):
    register(api_client)
    response = register(api_client, email="NEW@example.com")
    assert response.status_code == 400
    assert "email" in response.json()["error"]["fields"]
    assert User.objects.count() == 1


def test_weak_password_is_400_and_writes_nothing(api_client):
    response = api_client.post(
        "/api/v1/auth/register", {"email": "a@example.com", "password": "123"}, format="json"
    )
    assert response.status_code == 400
    assert "password" in response.json()["error"]["fields"]
    assert User.objects.count() == 0


def test_login_returns_hs256_jwt_valid_24h(api_client, user):
    response = api_client.post(
        "/api/v1/auth/login",
        {"email": "OWNER@example.com", "password": "s3cret-pass-1"},
        format="json",
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert claims["sub"] == str(user.pk)


def test_login_wrong_password_is_401(api_client, user):
    response = api_client.post(
        "/api/v1/auth/login", {"email": user.email, "password": "nope-nope-1"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Invalid email or password."


def test_expired_token_is_rejected(api_client, user, settings):
    settings.JWT_LIFETIME = timedelta(seconds=-5)
    token = api_client.post(
        "/api/v1/auth/login", {"email": user.email, "password": "s3cret-pass-1"}, format="json"
    ).json()["access_token"]

    response = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_and_unsigned_tokens_are_rejected(api_client, user, other_user):
    token = api_client.post(
        "/api/v1/auth/login", {"email": user.email, "password": "s3cret-pass-1"}, format="json"
    ).json()["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = str(other_user.pk)
    tampered = f"{header}.{_b64(claims)}.{signature}"
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    forged = jwt.encode(claims, "not-our-key", algorithm="HS256")

    for bad in (tampered, unsigned, forged):
        response = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {bad}")
        assert response.status_code == 401, bad


def test_me_anonymous_is_401(api_client):
    response = api_client.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["status"] == 401
