"""The port proxy's ASGI app against a raw HTTP/1.1 server on 127.0.0.1 (what a pod's app
would be on its port): access rules, header hygiene, framing and keep-alive. Through a real
container, with WebSockets: tests/e2e/test_pod_port_proxy.py."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client

from apps.podconnect import access, services
from apps.podconnect.portproxy import PortProxyRouter
from apps.pods.models import PodStatus
from tests.factories import make_pod

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class RawApp:
    """A tiny HTTP/1.1 server: answers every request with a chunked body and hop-by-hop
    headers; remembers the request heads and how many connections it accepted."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = await reader.readexactly(length) if length else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                    b"transfer-encoding: chunked\r\nconnection: keep-alive, x-hop\r\n"
                    b"x-hop: secret\r\nkeep-alive: timeout=5\r\nx-frame-options: SAMEORIGIN\r\n"
                    b"\r\n5\r\nhello\r\n"
                    + b"%x\r\n" % (len(body) + 1)
                    + b" "
                    + body
                    + b"\r\n0\r\n\r\n"
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def not_found_app(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"not the proxy"})


@pytest_asyncio.fixture
async def raw_app() -> AsyncIterator[tuple[RawApp, int]]:
    app = RawApp()
    port = await app.start()
    yield app, port
    app.close()


def proxy_client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=PortProxyRouter(not_found_app))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


@database_sync_to_async
def pod_on(user, port: int, **fields):
    return make_pod(user, None, endpoints={f"{port}/tcp": f"127.0.0.1:{port}"}, **fields)


@database_sync_to_async
def session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


@database_sync_to_async
def token_for(user, pod) -> str:
    return services.pod_token_create(user=user, pod_id=pod.pk, name="t").raw


async def test_relays_framing_and_drops_hop_by_hop_and_our_secrets(user, raw_app):
    app, port = raw_app
    pod = await pod_on(user, port)
    session = await session_of(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session}; app=1; {settings.CSRF_COOKIE_NAME}=x"

    async with proxy_client() as client:
        first = await client.post(
            f"/pods/{pod.pk}/ports/{port}/api?q=1",
            content=b"payload",
            headers={"Cookie": cookie, "Connection": "keep-alive, x-drop", "X-Drop": "1"},
        )
        second = await client.get(f"/pods/{pod.pk}/ports/{port}/", headers={"Cookie": cookie})
        elsewhere = await client.get("/pods/")

    assert first.status_code == 200 and first.text == "hello payload"
    assert second.text == "hello "
    assert "x-hop" not in first.headers and "keep-alive" not in first.headers
    assert first.headers["x-frame-options"] == "SAMEORIGIN"
    head = app.heads[0].lower()
    assert head.startswith(b"post /api?q=1 http/1.1")
    assert b"cookie: app=1\r\n" in head and session.encode() not in head
    assert b"x-drop" not in head and b"x-forwarded-prefix: /pods/" in head
    assert app.connections == 1  # the second request reused the kept-alive connection
    assert elsewhere.status_code == 418  # everything else goes to the site


async def test_access_answers(user, other_user, raw_app):
    _, port = raw_app
    pod = await pod_on(user, port)
    stopped = await pod_on(user, port, status=PodStatus.STOPPED)
    token = await token_for(user, pod)
    mine, theirs = await session_of(user), await session_of(other_user)
    name = settings.SESSION_COOKIE_NAME

    async with proxy_client() as client:
        anonymous = await client.get(f"/pods/{pod.pk}/ports/{port}/")
        stranger = await client.get(
            f"/pods/{pod.pk}/ports/{port}/", headers={"Cookie": f"{name}={theirs}"}
        )
        bad_token = await client.get(
            f"/pods/{pod.pk}/ports/{port}/", headers={"X-Pod-Token": "pt_x"}
        )
        token_other_pod = await client.get(
            f"/pods/{stopped.pk}/ports/{port}/", headers={"X-Pod-Token": token}
        )
        not_running = await client.get(
            f"/pods/{stopped.pk}/ports/{port}/", headers={"Cookie": f"{name}={mine}"}
        )
        unpublished = await client.get(
            f"/pods/{pod.pk}/ports/9/", headers={"Cookie": f"{name}={mine}"}
        )

    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"]
    assert stranger.status_code == 404
    assert bad_token.status_code == 401 and token_other_pod.status_code == 401
    assert not_running.status_code == 503 and "stopped" in not_running.json()["error"]["message"]
    assert unpublished.status_code == 404 and "not published" in unpublished.text


async def test_a_port_nobody_listens_on_is_a_502(user):
    closed_port = 1  # nothing listens on port 1 on this machine
    pod = await pod_on(user, closed_port)
    token = await token_for(user, pod)

    async with proxy_client() as client:
        answer = await client.get(
            f"/pods/{pod.pk}/ports/{closed_port}/", headers={"X-Pod-Token": token}
        )

    assert answer.status_code == 502 and "does not answer" in answer.text


async def test_revoking_a_token_takes_effect_at_once_in_this_process(user, raw_app):
    _, port = raw_app
    pod = await pod_on(user, port)
    token = await token_for(user, pod)
    url = f"/pods/{pod.pk}/ports/{port}/"

    async with proxy_client() as client:
        before = await client.get(url, headers={"X-Pod-Token": token})
        token_id = await database_sync_to_async(lambda: pod.access_tokens.get().pk)()
        await database_sync_to_async(services.pod_token_revoke)(
            user=user, pod_id=pod.pk, token_id=token_id
        )
        after = await client.get(url, headers={"X-Pod-Token": token})

    assert before.status_code == 200 and after.status_code == 401
    assert access.cached("t", access.token_digest(token), pod.pk) == access.BAD_TOKEN


async def test_a_client_gone_mid_upload_ends_the_exchange(user, raw_app):
    app, port = raw_app
    pod = await pod_on(user, port)
    token = await token_for(user, pod)
    messages = [
        {"type": "http.request", "body": b"only part", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # nothing more ever comes
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    path = f"/pods/{pod.pk}/ports/{port}/upload"
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"x-pod-token", token.encode()),
            (b"content-length", b"1000"),  # the app waits for all of it
        ],
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
    }

    # Bounded only so that a regression fails instead of hanging; it returns at once.
    await asyncio.wait_for(PortProxyRouter(not_found_app)(scope, receive, send), 60)

    assert not any(m["type"] == "http.response.start" for m in sent)
