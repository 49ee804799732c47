"""The request id that follows one piece of work through the system: a web request (from its
`X-Request-ID` header, or made up), the Celery tasks it publishes (a message header), and the
agent commands it queues (a `request_id` field in the command payload). It lives in a
contextvar, so every log line written while the work runs carries it (`RequestIdFilter`)."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gco_request_id", default=None
)
# A client's id is kept when it is short and plain (it ends up in logs and headers).
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# The Celery task running now (its name goes on each log line as `task`).
_task: contextvars.ContextVar[str | None] = contextvars.ContextVar("gco_task", default=None)
_task_tokens: dict[str, contextvars.Token[str | None]] = {}
HEADER = "X-Request-ID"
ASGI_HEADER = b"x-request-id"
CELERY_HEADER = "gco_request_id"


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept(value: str | None) -> str:
    """The client's id when it is acceptable, a fresh one otherwise."""
    if value and _ACCEPTABLE.fullmatch(value):
        return value
    return new_request_id()


def current() -> str | None:
    return _request_id.get()


def bind(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def unbind(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


@contextmanager
def bound(value: str | None) -> Iterator[str | None]:
    token = bind(value)
    try:
        yield value
    finally:
        unbind(token)


def with_request_id(payload: dict[str, Any]) -> dict[str, Any]:
    """An agent command's payload with the current request id (agents before 0.3 ignore it),
    unless the payload already names the request it belongs to (a pod's start carries the id
    of the request that created the pod, whoever places it)."""
    rid = _request_id.get()
    return {**payload, "request_id": rid} if rid and not payload.get("request_id") else payload


class RequestIdFilter(logging.Filter):
    """Puts `request_id` on every record (None outside a request or task). Django logs a
    request's 4xx/5xx (`django.request`) after the middleware has finished: the id is then
    read from the request the record carries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            rid = _request_id.get()
            if rid is None:
                rid = getattr(getattr(record, "request", None), "request_id", None)
            record.request_id = rid
        if not hasattr(record, "task"):
            task = _task.get()
            if task is not None:
                record.task = task
        return True


# --- Celery: the id rides in a message header ----------------------------------------------------


def celery_before_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """before_task_publish: stamp the publisher's request id on the message."""
    rid = _request_id.get()
    if rid and headers is not None:
        headers.setdefault(CELERY_HEADER, rid)


def celery_task_prerun(task: Any = None, task_id: str = "", **_: Any) -> None:
    """task_prerun: the task runs under the id its message carries. An eager task (run inline
    by its publisher) keeps the publisher's id; a worker's task without one gets none, so no
    id leaks from one task to the next in the same worker process."""
    request = getattr(task, "request", None)
    rid = getattr(request, CELERY_HEADER, None) if request is not None else None
    if rid is None and request is not None:
        rid = (getattr(request, "headers", None) or {}).get(CELERY_HEADER)
    if rid:
        _request_id.set(str(rid))
    elif request is None or not getattr(request, "is_eager", False):
        _request_id.set(None)
    name = getattr(task, "name", None)
    if name and task_id:
        _task_tokens[task_id] = _task.set(str(name))


def celery_task_postrun(task_id: str = "", **_: Any) -> None:
    """task_postrun: lines written after the task (or after an eager task, in its publisher)
    no longer name it."""
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        try:
            _task.reset(token)
        except ValueError:  # set in another context (a thread pool's): just clear it
            _task.set(None)
