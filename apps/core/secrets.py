"""Secrets that are shown once and stored as a hash: API keys, node tokens, provider keys,
deployment keys. Each carries a visible prefix (`gco_`, `nt_`, `pk_`, `sk_`) so a leaked one is
recognisable, and the stored form is SHA-256 of the whole string. The secrets are 256-bit random
values, so a fast hash is enough (no dictionary to attack); lookups go by hash, so comparing
never walks the secret byte by byte."""

import hashlib
import hmac
import secrets
from dataclasses import dataclass

DISPLAY_PREFIX_CHARS = 8


@dataclass(frozen=True)
class IssuedSecret:
    raw: str  # shown to its owner once, never stored
    display_prefix: str  # stored, shown in lists to tell keys apart
    digest: str  # stored, unique


def secret_digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def secret_issue(*, prefix: str) -> IssuedSecret:
    raw = prefix + secrets.token_urlsafe(32)
    return IssuedSecret(
        raw=raw,
        display_prefix=raw[: len(prefix) + DISPLAY_PREFIX_CHARS],
        digest=secret_digest(raw),
    )


def secret_matches(raw: str, digest: str) -> bool:
    return hmac.compare_digest(secret_digest(raw), digest)
