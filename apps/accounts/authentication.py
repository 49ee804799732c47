"""DRF authentication: personal API keys (`Authorization: Bearer gco_…` or `X-API-Key`), JWTs
(`Authorization: Bearer <jwt>`), and the browser session (in settings, after these)."""

from typing import Any

import jwt
from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts.jwt import jwt_decode
from apps.accounts.models import ApiKey, User
from apps.accounts.scopes import check_api_key_scope
from apps.accounts.services import API_KEY_PREFIX, ApiKeyExpiredError, api_key_authenticate
from apps.core.secrets import secret_digest


def _user_for_key(raw: str, request: Request) -> tuple[User, Any]:
    """The key's owner, or 401 (unknown, revoked, expired), or 403 (outside its scopes)."""
    try:
        api_key = api_key_authenticate(raw_key=raw)
    except ApiKeyExpiredError as exc:
        raise exceptions.AuthenticationFailed(str(exc), code="api_key_expired") from exc
    if api_key is None:
        raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
    check_api_key_scope(api_key, request)
    return api_key.user, api_key


class BearerAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        if not token:
            raise exceptions.AuthenticationFailed("Empty bearer token.")
        if token.startswith(API_KEY_PREFIX):
            return _user_for_key(token, request)
        if token.count(".") != 2:
            return None  # not ours (e.g. a deployment key on a /v1 route)
        try:
            claims = jwt_decode(token)
        except jwt.ExpiredSignatureError as exc:
            raise exceptions.AuthenticationFailed("Token has expired; log in again.") from exc
        except jwt.InvalidTokenError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        user = User.objects.filter(pk=claims["sub"], is_active=True).first()
        if user is None:
            raise exceptions.AuthenticationFailed("Token's user no longer exists.")
        return user, claims

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class ApiKeyHeaderAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, Any] | None:
        raw = request.META.get("HTTP_X_API_KEY", "").strip()
        if not raw.startswith(API_KEY_PREFIX):
            return None
        return _user_for_key(raw, request)


def rate_limit_identity(request: HttpRequest) -> str | None:
    """For the rate limiter (RATE_LIMIT_IDENTITY_RESOLVERS): "apikey:<id>" for a valid personal
    API key, "user:<id>" for a valid JWT, None for anything that does not verify."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    bearer = token.strip() if scheme.lower() == "bearer" else ""
    for raw in (bearer, request.META.get("HTTP_X_API_KEY", "").strip()):
        if raw.startswith(API_KEY_PREFIX):
            key_id = (
                ApiKey.objects.active()
                .filter(digest=secret_digest(raw), user__is_active=True)
                .values_list("pk", flat=True)
                .first()
            )
            if key_id is not None:
                return f"apikey:{key_id}"
    if bearer.count(".") == 2:
        try:
            claims = jwt_decode(bearer)
        except jwt.InvalidTokenError:
            return None
        return f"user:{claims['sub']}"
    return None
