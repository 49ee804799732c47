"""Waiting for a pod's logs without holding a web worker.

`GET /api/v1/pods/{id}/logs` asks the pod's node for its container log and answers when the
agent has replied (on its next heartbeat: up to POD_LOGS_WAIT_S, 15 s). Under ASGI, a Django
view that waits holds a thread, its database connection and one of the web process's bounded
request slots (apps/core/asgi.py) the whole time. So `PodLogsWaiter` sits in front of Django:
the request runs through Django as any other (middleware, authentication, ownership,
validation, the `fetch_logs` command), but the view, seeing `WAITER_SCOPE_KEY` in the ASGI
scope, answers at once with the command to wait for (a placeholder the client never sees).
The waiter then polls for the agent's answer in the event loop (one short query every
0.25 s, no thread held in between) and sends the final answer with the headers Django's
middleware set. Under WSGI and Django's test client there is no waiter and the view waits
itself. Both read the outcome through `logs_outcome`, so the two paths answer alike."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from apps.core.errors import error_body
from apps.nodes.models import CommandStatus, NodeCommand

LOGS_PATH = re.compile(r"^/api/v1/pods/[0-9a-fA-F-]{36}/logs$")
WAITER_SCOPE_KEY = "gco.pod_logs_waiter"
COMMAND_HEADER = "X-Gco-Logs-Command"
POLL_S = 0.25

TIMEOUT_BODY = error_body(
    status_code=504, code="logs_timeout", message="The node did not answer in time; try again."
)


def logs_outcome(command_id: uuid.UUID | str) -> tuple[int, dict[str, Any]] | None:
    """The answer for a `fetch_logs` command once its agent replied: (200, logs) or (500, why
    the node could not read them). None while it has not replied."""
    done = NodeCommand.objects.filter(
        pk=command_id, status__in=(CommandStatus.ACKED, CommandStatus.FAILED)
    ).first()
    if done is None:
        return None
    if done.status == CommandStatus.FAILED:
        message = f"The node could not read logs: {done.error}"
        return 500, error_body(status_code=500, code="error", message=message)
    return 200, {"pod_id": str(done.payload.get("pod_id", "")), "logs": done.result.get("logs", "")}


def logs_wait_blocking(command_id: uuid.UUID | str) -> tuple[int, dict[str, Any]]:
    """The view's own wait (no waiter in front: WSGI, the test client)."""
    deadline = time.monotonic() + settings.POD_LOGS_WAIT_S
    while time.monotonic() < deadline:
        outcome = logs_outcome(command_id)
        if outcome is not None:
            return outcome
        time.sleep(POLL_S)
    return 504, TIMEOUT_BODY


async def logs_wait(command_id: str) -> tuple[int, dict[str, Any]]:
    """The waiter's wait: the event loop sleeps between the polls."""
    deadline = time.monotonic() + settings.POD_LOGS_WAIT_S
    outcome_of = database_sync_to_async(logs_outcome)
    while time.monotonic() < deadline:
        outcome = await outcome_of(command_id)
        if outcome is not None:
            return outcome
        await asyncio.sleep(POLL_S)
    return 504, TIMEOUT_BODY


class PodLogsWaiter:
    """ASGI middleware in front of Django (config/asgi.py), outside the request bound, for
    `GET /api/v1/pods/{id}/logs`; every other request passes straight through."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "GET"
            or not LOGS_PATH.match(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        marker = COMMAND_HEADER.lower().encode()
        placeholder: dict[str, Any] | None = None

        async def send_or_hold(message: dict[str, Any]) -> None:
            nonlocal placeholder
            if message["type"] == "http.response.start" and any(
                name.lower() == marker for name, _ in message.get("headers", ())
            ):
                placeholder = message
                return
            if placeholder is None:  # any other answer (401, 404, 400, upstream logs) as is
                await send(message)

        await self.app({**scope, WAITER_SCOPE_KEY: True}, receive, send_or_hold)
        if placeholder is None:
            return
        command_id = next(v for n, v in placeholder["headers"] if n.lower() == marker).decode()
        status, body = await logs_wait(command_id)
        payload = json.dumps(body).encode()
        kept = [
            (name, value)
            for name, value in placeholder["headers"]
            if name.lower() not in (marker, b"content-length", b"content-type")
        ]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *kept,
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
