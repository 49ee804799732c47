"""JWTs for API clients: HS256, 24 h by default, signed with JWT_SIGNING_KEY (PyJWT)."""

import uuid
from typing import Any

import jwt
from django.conf import settings
from django.utils import timezone

from apps.accounts.models import User

ISSUER = "gco"


def jwt_issue(*, user: User) -> tuple[str, int]:
    """A signed token for `user` and its lifetime in seconds."""
    now = timezone.now()
    lifetime = settings.JWT_LIFETIME
    claims = {
        "iss": ISSUER,
        "sub": str(user.pk),
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    token = jwt.encode(claims, settings.JWT_SIGNING_KEY, algorithm=settings.JWT_ALGORITHM)
    return token, int(lifetime.total_seconds())


def jwt_decode(token: str) -> dict[str, Any]:
    """Claims of a valid token; raises jwt.InvalidTokenError (expired, tampered, wrong
    algorithm, wrong issuer) otherwise."""
    return jwt.decode(
        token,
        settings.JWT_SIGNING_KEY,
        algorithms=[settings.JWT_ALGORITHM],
        issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "iss"]},
    )
