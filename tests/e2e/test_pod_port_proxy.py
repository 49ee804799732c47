"""The port proxy end to end: a real agent runs a real web app (tests/e2e/port_app.py) in a
pod's container with host networking; our ASGI app (uvicorn, this process) proxies
`/pods/{id}/ports/{port}/…` to it, HTTP and WebSocket. Owner's session and access tokens get
through; another user's session gets 404, a revoked token 401, nobody 401."""

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest
from rest_framework.test import APIClient
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from backends.localimage import IMAGE, agent_mounts, ensure_image
from tests.e2e.pod_connect_conftest import (  # noqa: F401 - fixtures
    asgi_server,
    connect_agent,
    running_pod,
    session_cookie,
)
from tests.support import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(email="owner@example.com", password="x-2026-pw")


@pytest.fixture
def other(django_user_model):
    return django_user_model.objects.create_user(email="other@example.com", password="x-2026-pw")


@pytest.fixture
def app_pod(connect_agent, docker_client, owner, cleanup_containers):  # noqa: F811
    """A RUNNING pod of `owner` serving port_app.py on a free port of the host."""
    ensure_image(docker_client)
    node = connect_agent(network_mode="host", mounts=agent_mounts(Path(sys.prefix)))
    port = free_port()
    pod = running_pod(
        owner,
        node,
        IMAGE,
        ["/opt/gco/venv/bin/python", "/opt/gco/app/tests/e2e/port_app.py", "--port", str(port)],
        ports=[port],
        network_mode="host",
    )

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/up", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, "the app in the pod")
    wait_for(lambda: pod.__class__.objects.get(pk=pod.pk).endpoints, "the pod's endpoints")
    pod.refresh_from_db()
    return pod, port


def cookie_header(user) -> str:
    cookie = session_cookie(user)
    return f"{cookie['name']}={cookie['value']}"


def ws_url(server, pod, port: int, suffix: str = "/ws") -> str:
    return server.url.replace("http://", "ws://") + f"/pods/{pod.pk}/ports/{port}{suffix}"


def test_owner_reaches_the_app_over_http_and_websocket(asgi_server, app_pod, owner):  # noqa: F811
    pod, port = app_pod
    base = f"{asgi_server.url}/pods/{pod.pk}/ports/{port}"
    headers = {"Cookie": f"app=1; {cookie_header(owner)}"}

    with httpx.Client(headers=headers, timeout=30) as client:
        seen = client.get(f"{base}/notebooks/a b?x=1")
        redirect = client.get(base, follow_redirects=False)
        body = os.urandom(3 * 1024 * 1024)
        echoed = client.post(f"{base}/echo", content=iter([body[:100_000], body[100_000:]]))
        absolute = client.get(f"{asgi_server.url}/pods/{pod.pk}/ports-absolute/{port}/lab")

    assert seen.status_code == 200
    app_saw = seen.json()
    assert app_saw["path"] == "/notebooks/a b" and app_saw["query"] == "x=1"
    assert app_saw["cookie"] == "app=1"  # our session cookie never reaches the pod
    assert app_saw["x_forwarded_prefix"] == f"/pods/{pod.pk}/ports/{port}"
    assert seen.headers["x-frame-options"] == "SAMEORIGIN"  # the app's, not our DENY
    assert "content-security-policy" not in seen.headers
    assert redirect.status_code == 307 and redirect.headers["location"].endswith(f"/{port}/")
    assert echoed.status_code == 200 and echoed.content == body
    assert absolute.json()["path"] == f"/pods/{pod.pk}/ports-absolute/{port}/lab"

    session = cookie_header(owner)

    async def talk() -> tuple[str, bytes]:
        async with connect(
            ws_url(asgi_server, pod, port),
            additional_headers={"Cookie": session},
            origin=asgi_server.url,
        ) as socket:
            await socket.send("hello through the proxy")
            text = await socket.recv()
            await socket.send(b"\x00\x01binary")
            data = await socket.recv()
            return text, data

    assert asyncio.run(talk()) == ("hello through the proxy", b"\x00\x01binary")


def test_another_users_session_gets_404_and_nobody_gets_401(asgi_server, app_pod, other):  # noqa: F811
    pod, port = app_pod
    url = f"{asgi_server.url}/pods/{pod.pk}/ports/{port}/hello"

    as_other = httpx.get(url, headers={"Cookie": cookie_header(other)})
    anonymous = httpx.get(url)

    async def socket_status(headers: dict[str, str]) -> int:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(asgi_server, pod, port), additional_headers=headers):
                pass
        return refused.value.response.status_code

    assert as_other.status_code == 404
    assert anonymous.status_code == 401
    assert "X-Pod-Token" in anonymous.json()["error"]["message"]
    other_session = cookie_header(other)
    assert asyncio.run(socket_status({"Cookie": other_session})) == 404
    assert asyncio.run(socket_status({})) == 401


def test_access_token_works_until_revoked(asgi_server, app_pod, owner):  # noqa: F811
    pod, port = app_pod
    api = APIClient()
    api.force_authenticate(owner)
    created = api.post(f"/api/v1/pods/{pod.pk}/access-tokens", {"name": "ci"}, format="json")
    assert created.status_code == 201, created.content
    token = created.json()["token"]
    url = f"{asgi_server.url}/pods/{pod.pk}/ports/{port}/hello"

    by_header = httpx.get(url, headers={"X-Pod-Token": token})
    by_query = httpx.get(url, params={"gco_pod_token": token, "keep": "me"})

    async def echo_with_token() -> str:
        async with connect(ws_url(asgi_server, pod, port, f"/ws?gco_pod_token={token}")) as ws:
            await ws.send("token socket")
            return str(await ws.recv())

    assert by_header.status_code == 200 and by_header.json()["x_pod_token"] == ""
    assert by_query.status_code == 200 and by_query.json()["query"] == "keep=me"
    assert asyncio.run(echo_with_token()) == "token socket"
    listed = api.get(f"/api/v1/pods/{pod.pk}/access-tokens").json()
    assert [t["prefix"] for t in listed] == [created.json()["prefix"]]
    assert token not in json.dumps(listed)

    revoked = api.delete(f"/api/v1/pods/{pod.pk}/access-tokens/{created.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["active"] is False

    # The revoking process forgets the token at once; others within POD_PORT_PROXY_AUTH_CACHE_S.
    wait_for(
        lambda: httpx.get(url, headers={"X-Pod-Token": token}).status_code == 401,
        "the revoked token refused",
        timeout=10,
    )
    assert httpx.get(url, params={"gco_pod_token": token}).status_code == 401
    assert httpx.get(url, headers={"X-Pod-Token": "pt_not-a-token"}).status_code == 401


def test_unpublished_port_and_other_users_token_api(asgi_server, app_pod, owner, other):  # noqa: F811
    pod, port = app_pod
    cookie = {"Cookie": cookie_header(owner)}
    unpublished = httpx.get(f"{asgi_server.url}/pods/{pod.pk}/ports/1/", headers=cookie)
    api = APIClient()
    api.force_authenticate(other)

    assert unpublished.status_code == 404
    assert "not published" in unpublished.json()["error"]["message"]
    assert api.get(f"/api/v1/pods/{pod.pk}/access-tokens").status_code == 404
    assert (
        api.post(f"/api/v1/pods/{pod.pk}/access-tokens", {"name": "x"}, format="json").status_code
        == 404
    )
