"""Idempotency-Key for API operations that create something (docs/idempotency.md), after the
IETF httpapi draft "The Idempotency-Key HTTP Header Field":

- the first request with a key runs, and its status and body are stored (not 5xx, and not a
  refusal raised as an error: those are not stored, so the client may retry with the key);
- a retry with the same key and body gets the stored status and body back, byte for byte the
  first answer, with `Idempotent-Replayed: true`, and nothing runs again;
- the same key with another body is a 422; a retry while the first is still running, a 409;
- keys expire after IDEMPOTENCY_KEY_TTL_S (24 h): later, the key is new again.

Keys are scoped to the user and the operation, so one user's key never reaches another's."""

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.errors import Conflict
from apps.core.models import IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with a different request body; use a new key."
    default_code = "idempotency_key_reused"


def _ttl() -> timedelta:
    return timedelta(seconds=int(settings.IDEMPOTENCY_KEY_TTL_S))


def request_fingerprint(request: Request) -> str:
    """SHA-256 of the method, path and body (JSON bodies canonicalised, so key order and
    spacing do not make a different request)."""
    raw = request._request.body  # read before DRF parses; Django keeps it for the parser
    try:
        body = json.dumps(json.loads(raw or b"null"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        body = raw.hex()
    text = f"{request.method} {request.path}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_begin(
    *, user: Any, scope: str, key: str, request_hash: str
) -> tuple[IdempotencyRecord, bool]:
    """Claim `key` for this request: (the new record, False), or (the stored record, True) for
    a replay. Raises IdempotencyKeyReused (other body) or Conflict (first still running)."""
    for _ in range(2):
        with transaction.atomic():
            record = (
                IdempotencyRecord.objects.select_for_update()
                .filter(user=user, scope=scope, key=key)
                .first()
            )
            if record is not None and record.created_at <= timezone.now() - _ttl():
                record.delete()  # expired: the key is new again
                record = None
            if record is None:
                try:
                    with transaction.atomic():
                        created = IdempotencyRecord.objects.create(
                            user=user, scope=scope, key=key, request_hash=request_hash
                        )
                    return created, False
                except IntegrityError:
                    continue  # a concurrent request claimed it first: look again
            if record.request_hash != request_hash:
                raise IdempotencyKeyReused
            if record.status_code is None:
                raise Conflict(
                    detail="A request with this Idempotency-Key is still being processed; "
                    "retry later.",
                    code="idempotency_key_in_use",
                )
            return record, True
    raise Conflict(detail="This Idempotency-Key is in use; retry later.", code="conflict")


def idempotency_finish(*, record: IdempotencyRecord, response: Response) -> None:
    """Store the first response, or forget the key when it is not one to replay."""
    if response.status_code >= 500:
        record.delete()
        return
    record.status_code = response.status_code
    record.response_body = response.data
    record.save(update_fields=["status_code", "response_body"])


def idempotency_purge() -> int:
    """Delete expired records; returns how many."""
    cutoff = timezone.now() - _ttl()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lte=cutoff).delete()
    return deleted


def idempotent(scope: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Decorate a DRF view method (`post`) so the Idempotency-Key header behaves as above.
    Without the header, the method simply runs."""

    def decorate(method: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(method)
        def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
            key = request.headers.get(HEADER, "").strip()
            if not key:
                return method(view, request, *args, **kwargs)
            if len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise exceptions.ValidationError(
                    {HEADER: f"Use 1 to {MAX_KEY_LENGTH} printable characters."}
                )
            record, replay = idempotency_begin(
                user=request.user, scope=scope, key=key, request_hash=request_fingerprint(request)
            )
            if replay:
                return Response(
                    record.response_body,
                    status=record.status_code,
                    headers={"Idempotent-Replayed": "true"},
                )
            try:
                response = method(view, request, *args, **kwargs)
            except BaseException:
                record.delete()  # a refusal or a crash: nothing to replay, the key is free
                raise
            idempotency_finish(record=record, response=response)
            return response

        return wrapper

    return decorate
