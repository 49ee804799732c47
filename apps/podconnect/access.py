"""Who may reach a pod's port through the port proxy, and where that port answers.

Two credentials: the owner's signed-in session (the portal's cookie), or a pod access token
(`pt_…`) in the `X-Pod-Token` header or the `gco_pod_token` query parameter. A token that is
presented decides alone (unknown or revoked: 401), so a script never silently rides on a
browser session. A session that is not the owner's, and a pod that does not exist, are both
404. What was read is trusted for POD_PORT_PROXY_AUTH_CACHE_S per web process: the proxy's
hot path does no database work on repeated requests (revoking a token clears this process's
copy at once; other processes see it within that time)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare

from apps.core.secrets import secret_digest
from apps.podconnect.models import PodAccessToken
from apps.pods.models import Pod, PodStatus

TOKEN_HEADER = b"x-pod-token"
TOKEN_QUERY = "gco_pod_token"  # noqa: S105 - a parameter name
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Denied:
    """A refusal: the HTTP status and the message the client reads."""

    status: int
    message: str


@dataclass(frozen=True)
class PodPorts:
    """A pod the caller may reach: its status and its published ports."""

    status: str
    endpoints: dict[str, str]
    by_session: bool  # authorised by a browser session (the Origin check applies)

    def target(self, port: int) -> tuple[str, int] | Denied:
        if self.status != PodStatus.RUNNING:
            return Denied(503, f"The pod is {self.status.lower()}; its ports answer while it runs.")
        endpoint = self.endpoints.get(f"{port}/tcp")
        if not endpoint:
            return Denied(404, f"Port {port} is not published by this pod.")
        host, _, number = endpoint.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(number)


NOT_FOUND = Denied(404, "No such pod.")
NO_CREDENTIAL = Denied(
    401,
    "Sign in as the pod's owner, or send a pod access token in the X-Pod-Token header or "
    "the gco_pod_token query parameter.",
)
BAD_TOKEN = Denied(401, "The pod access token is unknown, revoked, or for another pod.")

_cache: dict[tuple[str, str, uuid.UUID], tuple[float, PodPorts | Denied]] = {}


def forget_token(raw_digest: str) -> None:
    """Drop this process's cached answers for a token (called when it is revoked)."""
    for key in [k for k in _cache if k[0] == "t" and k[1] == raw_digest]:
        _cache.pop(key, None)


def cached(kind: str, credential: str, pod_id: uuid.UUID) -> PodPorts | Denied | None:
    entry = _cache.get((kind, credential, pod_id))
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def remember(kind: str, credential: str, pod_id: uuid.UUID, answer: PodPorts | Denied) -> None:
    if len(_cache) >= MAX_CACHED:
        _cache.clear()
    _cache[(kind, credential, pod_id)] = (
        time.monotonic() + settings.POD_PORT_PROXY_AUTH_CACHE_S,
        answer,
    )


def by_token(digest: str, pod_id: uuid.UUID) -> PodPorts | Denied:
    """Runs in a worker thread (database)."""
    row = (
        PodAccessToken.objects.filter(digest=digest, pod_id=pod_id)
        .values("revoked_at", "pod__status", "pod__endpoints")
        .first()
    )
    if row is None or row["revoked_at"] is not None:
        return BAD_TOKEN
    return PodPorts(row["pod__status"], dict(row["pod__endpoints"] or {}), by_session=False)


def session_user_id(session_key: str) -> Any | None:
    """The signed-in user of a session cookie, checked like Django's `get_user` does (the
    session's auth hash must match the user's current one: a password change logs out)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    data = store.load()
    user_id = data.get(SESSION_KEY)
    if user_id is None:
        return None
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(
        data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()
    ):
        return None
    return user.pk


def by_session(session_key: str, pod_id: uuid.UUID) -> PodPorts | Denied:
    """Runs in a worker thread (database)."""
    user_id = session_user_id(session_key)
    if user_id is None:
        return NO_CREDENTIAL
    row = Pod.objects.filter(pk=pod_id, owner_id=user_id).values("status", "endpoints").first()
    if row is None:
        return NOT_FOUND
    return PodPorts(row["status"], dict(row["endpoints"] or {}), by_session=True)


def token_digest(raw: str) -> str:
    return secret_digest(raw)
