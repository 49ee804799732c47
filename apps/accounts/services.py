"""Writes for users and their API keys."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import ApiKey, User, all_scopes
from apps.core.secrets import secret_digest, secret_issue

API_KEY_PREFIX = "gco_"
# Writing last_used_at on every request would turn each API call into a write; once a minute
# is precise enough for "when was this key last used".
LAST_USED_RESOLUTION = timedelta(minutes=1)


class EmailTakenError(Exception):
    pass


class ApiKeyExpiredError(Exception):
    """The key is valid but past its `expires_at` (a 401 that says so)."""

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        super().__init__(f"This API key expired at {api_key.expires_at:%Y-%m-%d %H:%M} UTC.")


class ApiKeyInputError(ValueError):
    """Bad scopes or expiry for a new key: `field` names which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@transaction.atomic
def user_register(*, email: str, password: str, name: str = "") -> User:
    """Create a user with an unverified email address (verification mail goes out through
    allauth by the caller, who has the request)."""
    from allauth.account.models import EmailAddress

    email = email.strip().lower()
    candidate = User(email=email, name=name)
    validate_password(password, user=candidate)
    if User.objects.filter(email__iexact=email).exists():
        raise EmailTakenError(email)
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, name=name)
    except IntegrityError as exc:  # a concurrent registration of the same address won
        raise EmailTakenError(email) from exc
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=False)
    return user


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    raw_key: str  # shown once


def api_key_create(
    *,
    user: User,
    name: str,
    scopes: Iterable[str] | None = None,
    expires_at: datetime | None = None,
) -> CreatedApiKey:
    """Issue a key with `scopes` (default: all of them) that stops working at `expires_at`
    (default: never). Raises ApiKeyInputError for an unknown or empty scope list or an expiry
    in the past."""
    known = all_scopes()
    chosen = known if scopes is None else [s for s in known if s in set(scopes)]
    unknown = sorted(set(scopes or ()) - set(known))
    if unknown:
        raise ApiKeyInputError("scopes", f"Unknown scope(s) {', '.join(unknown)}; use {known}.")
    if not chosen:
        raise ApiKeyInputError("scopes", "Choose at least one scope.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiKeyInputError("expires_at", "The expiry must be in the future.")
    issued = secret_issue(prefix=API_KEY_PREFIX)
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=issued.display_prefix,
        digest=issued.digest,
        scopes=chosen,
        expires_at=expires_at,
    )
    return CreatedApiKey(api_key=api_key, raw_key=issued.raw)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """The unrevoked key with this value, its owner loaded; marks it used (at most once a
    minute). ApiKeyExpiredError when it is past its expiry."""
    api_key = (
        ApiKey.objects.active()
        .select_related("user")
        .filter(digest=secret_digest(raw_key), user__is_active=True)
        .first()
    )
    if api_key is None:
        return None
    if api_key.is_expired:
        raise ApiKeyExpiredError(api_key)
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key
