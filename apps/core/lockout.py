"""Failure back-off for guessable secrets (passwords): after `free_failures` failures within
`window_s`, a subject (an account, an IP address) is locked for `base_lock_s`, doubling with
each further failure up to `max_lock_s`. A success clears the subject's failures.

State lives in the cache (Redis when REDIS_URL is set), so every web process sees the same
locks; keys are hashes, so the cache holds no email address. A subject that does not exist
(an unknown account) is counted and locked exactly like one that does: a lock says nothing
about whether an account exists."""

import hashlib
import math
import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class LockPolicy:
    scope: str  # e.g. "login:account"
    free_failures: int
    window_s: int
    base_lock_s: float
    max_lock_s: float

    @classmethod
    def from_setting(cls, scope: str, value: dict[str, float]) -> "LockPolicy":
        return cls(
            scope=scope,
            free_failures=int(value["FREE_FAILURES"]),
            window_s=int(value["WINDOW_S"]),
            base_lock_s=float(value["BASE_LOCK_S"]),
            max_lock_s=float(value["MAX_LOCK_S"]),
        )


def _key(policy: LockPolicy, subject: str, part: str) -> str:
    digest = hashlib.sha256(f"{policy.scope}\n{subject}".encode()).hexdigest()[:32]
    return f"lock:{policy.scope}:{digest}:{part}"


def lock_remaining(policy: LockPolicy, subject: str, now: float | None = None) -> int:
    """Whole seconds until `subject` may try again (0: not locked)."""
    until = cache.get(_key(policy, subject, "until"))
    if until is None:
        return 0
    left = float(until) - (time.time() if now is None else now)
    return math.ceil(left) if left > 0 else 0


def lock_failure(policy: LockPolicy, subject: str, now: float | None = None) -> int:
    """Count one failure; the seconds `subject` is now locked for (0: not locked)."""
    failures_key = _key(policy, subject, "failures")
    cache.add(failures_key, 0, policy.window_s)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # expired between add and incr
        cache.set(failures_key, 1, policy.window_s)
        failures = 1
    excess = failures - policy.free_failures
    if excess <= 0:
        return 0
    lock_s = min(policy.max_lock_s, policy.base_lock_s * 2 ** min(excess - 1, 32))
    until = (time.time() if now is None else now) + lock_s
    cache.set(_key(policy, subject, "until"), until, math.ceil(lock_s))
    return math.ceil(lock_s)


def lock_clear(policy: LockPolicy, subject: str) -> None:
    cache.delete_many([_key(policy, subject, "failures"), _key(policy, subject, "until")])
