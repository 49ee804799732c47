"""The ASGI bound on in-flight requests: excess requests wait, and those that wait too long
are shed with a 503 that says so, before reaching Django."""

import asyncio
import json
from typing import Any

from apps.core.asgi import BoundedConcurrency
from tests.support import wait_for_async


class SlowApp:
    """An ASGI app that holds each request until released."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.started += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(
    app: Any, path: str = "/api/v1/nodes/heartbeat"
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "POST"}, receive, send)
    start, body = sent[0], sent[1]
    return start["status"], dict(start["headers"]), body["body"]


def test_requests_beyond_the_bound_wait_then_are_shed_with_503() -> None:
    async def scenario() -> None:
        inner = SlowApp()
        app = BoundedConcurrency(inner, limit=2, queue_timeout_s=0.2, retry_after_s=3)
        running = [asyncio.create_task(call(app)) for _ in range(2)]
        await wait_for_async(lambda: inner.started == 2, "both slots taken", timeout=10)

        status, headers, body = await call(app)  # no slot frees up within 0.2 s
        assert status == 503
        assert headers[b"retry-after"] == b"3"
        error = json.loads(body)["error"]
        assert error["code"] == "overloaded" and error["status"] == 503
        assert inner.started == 2  # the shed request never reached the app
        assert app.shed == 1

        # From here on a patient queue: the next request waits for its slot however long a
        # busy machine takes to free one (0.2 s could pass between two steps of the loop).
        app.queue_timeout_s = 60
        waiting = asyncio.create_task(call(app))  # waits for a slot, then runs
        await asyncio.sleep(0)
        inner.release.set()
        results = await asyncio.gather(*running, waiting)
        assert [r[0] for r in results] == [200, 200, 200]
        assert inner.started == 3

    asyncio.run(scenario())


def test_liveness_bypasses_the_bound() -> None:
    async def scenario() -> None:
        inner = SlowApp()
        app = BoundedConcurrency(inner, limit=1, queue_timeout_s=0.1)
        held = asyncio.create_task(call(app))
        await wait_for_async(lambda: inner.started == 1, "the one slot taken", timeout=10)
        health = asyncio.create_task(call(app, "/healthz"))
        # /healthz goes straight in: a bounded request would find the slot taken and be shed
        # with 503 after 0.1 s, never reaching the app (this wait would time out)
        await wait_for_async(lambda: inner.started == 2, "/healthz in the app", timeout=10)
        inner.release.set()
        assert [(await held)[0], (await health)[0]] == [200, 200]

    asyncio.run(scenario())
