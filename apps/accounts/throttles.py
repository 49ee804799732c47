"""Brute-force limits of the API's own login and registration (`/api/v1/auth/login`,
`/api/v1/auth/register`), on top of the site-wide per-client rate limit.

- Login: failures are counted per account (the email asked for, whether or not an account has
  it) and per client IP. Past AUTH_LOGIN_ACCOUNT_LOCK["FREE_FAILURES"] (or the IP's) failures
  in the window, that account (or IP) is locked, doubling with each further failure up to the
  maximum (apps.core.lockout). A locked login is a 429 with Retry-After, whatever the password,
  and the same for an unknown address: the answer never says whether an account exists. A
  successful login clears the account's failures, not the IP's (an attacker's own account must
  not reset the count of their guesses at others).
- Registration: attempts per IP and per email address (AUTH_REGISTER_RATES_PER_IP /
  _PER_ACCOUNT), so nobody can mint accounts in bulk or flood one address with confirmation
  mail.

The portal's session login and password reset are allauth's, limited by ACCOUNT_RATE_LIMITS."""

from django.conf import settings
from django.http import HttpRequest
from rest_framework.exceptions import Throttled

from apps.core.lockout import LockPolicy, lock_clear, lock_failure, lock_remaining
from apps.core.middleware import client_ip
from apps.core.ratelimit import parse_limits, rate_limit_hit


def _policies() -> tuple[LockPolicy, LockPolicy]:
    return (
        LockPolicy.from_setting("login:account", settings.AUTH_LOGIN_ACCOUNT_LOCK),
        LockPolicy.from_setting("login:ip", settings.AUTH_LOGIN_IP_LOCK),
    )


def _subjects(request: HttpRequest, email: str) -> tuple[str, str]:
    return email.strip().lower(), client_ip(request)


def _locked(wait: int) -> Throttled:
    return Throttled(
        wait=wait,
        detail=f"Too many failed logins; retry in {wait} s.",
    )


def login_guard(request: HttpRequest, *, email: str) -> None:
    """Throttled (429) while the account or the client's IP is locked."""
    wait = max(
        lock_remaining(policy, subject)
        for policy, subject in zip(_policies(), _subjects(request, email), strict=True)
    )
    if wait:
        raise _locked(wait)


def login_failed(request: HttpRequest, *, email: str) -> None:
    for policy, subject in zip(_policies(), _subjects(request, email), strict=True):
        lock_failure(policy, subject)


def login_succeeded(request: HttpRequest, *, email: str) -> None:
    account_policy, _ = _policies()
    lock_clear(account_policy, _subjects(request, email)[0])


def register_guard(request: HttpRequest, *, email: str) -> None:
    """Count one registration attempt against the IP and the address; Throttled past either."""
    account, ip = _subjects(request, email)
    for bucket, rates in (
        (f"register-ip:{ip}", settings.AUTH_REGISTER_RATES_PER_IP),
        (f"register-account:{account}", settings.AUTH_REGISTER_RATES_PER_ACCOUNT),
    ):
        verdict = rate_limit_hit(bucket, limits=parse_limits(rates))
        if not verdict.allowed:
            raise Throttled(
                wait=verdict.retry_after,
                detail=f"Too many registration attempts; retry in {verdict.retry_after} s.",
            )
