"""The terminal's two sockets in process (Channels' WebsocketCommunicator): who is refused,
how browser and agent are joined, and the timers that end a session. The real agent and
`docker exec` are in tests/e2e/test_pod_terminal.py."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.urls import path

from apps.nodes.models import NodeCommand
from apps.podconnect.models import TerminalSession, TerminalStatus
from apps.podconnect.routing import websocket_urlpatterns
from apps.podconnect.terminal import TerminalAgentConsumer, TerminalBrowserConsumer
from apps.pods.models import PodStatus
from tests.factories import make_pod, node_with_token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

# The routes without the session middleware: each test puts its persona in the scope.
APP = URLRouter(
    [
        path("ws/pods/<uuid:pod_id>/terminal", TerminalBrowserConsumer.as_asgi()),
        path("ws/agent/terminal/<uuid:session_id>", TerminalAgentConsumer.as_asgi()),
    ]
)


def browser(pod_id, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(APP, f"/ws/pods/{pod_id}/terminal")
    communicator.scope["user"] = user
    return communicator


def agent(session_id, node_token: str, token: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        APP,
        f"/ws/agent/terminal/{session_id}",
        headers=[(b"x-agent-api-key", node_token.encode()), (b"x-terminal-token", token.encode())],
    )


async def status(communicator: WebsocketCommunicator) -> dict:
    while True:
        frame = await communicator.receive_output(timeout=10)
        if frame["type"] == "websocket.send" and frame.get("text"):
            return json.loads(frame["text"])
        if frame["type"] == "websocket.close":
            return {"state": "socket-closed", "code": frame.get("code")}


@database_sync_to_async
def setup(user, pod_status=PodStatus.RUNNING):
    node, node_token = node_with_token()
    return make_pod(user, node, status=pod_status), node_token


@database_sync_to_async
def session_and_token(pod):
    session = TerminalSession.objects.get(pod=pod)
    return session, NodeCommand.objects.get(pk=session.command_id).payload["token"]


async def test_anonymous_and_another_user_are_refused_at_the_handshake(user, other_user):
    pod, _ = await setup(user)

    for persona in (AnonymousUser(), other_user):
        connected, _ = await browser(pod.pk, persona).connect()
        assert connected is False

    assert not await database_sync_to_async(TerminalSession.objects.exists)()


async def test_a_stopped_pod_answers_why_and_closes(user):
    pod, _ = await setup(user, PodStatus.STOPPED)
    socket = browser(pod.pk, user)
    connected, _ = await socket.connect()

    message = await status(socket)
    closed = await socket.receive_output(timeout=5)

    assert connected and message["state"] == "error" and "stopped" in message["message"]
    assert closed == {"type": "websocket.close", "code": 4409}


async def test_browser_and_agent_are_joined_both_ways(user):
    pod, node_token = await setup(user)
    socket = browser(pod.pk, user)
    await socket.connect()
    assert (await status(socket))["state"] == "waiting"
    await socket.send_to(bytes_data=b"typed early")
    await socket.send_to(text_data=json.dumps({"type": "resize", "cols": 90, "rows": 20}))
    session, token = await session_and_token(pod)

    shell = agent(session.pk, node_token, token)
    connected, _ = await shell.connect()
    assert connected and (await status(socket))["state"] == "open"
    # What the browser sent before the agent came is delivered (held, or passed on at once).
    first_two = [await shell.receive_output(), await shell.receive_output()]
    assert {"type": "websocket.send", "bytes": b"typed early"} in first_two
    resize = next(f["text"] for f in first_two if f.get("text"))
    assert json.loads(resize) == {"type": "resize", "cols": 90, "rows": 20}

    await socket.send_to(bytes_data=b"ls\r")
    assert (await shell.receive_output())["bytes"] == b"ls\r"
    await shell.send_to(bytes_data=b"bin  tmp\r\n")
    assert (await socket.receive_output())["bytes"] == b"bin  tmp\r\n"

    await shell.send_to(text_data=json.dumps({"type": "error", "message": "shell gone"}))
    await shell.disconnect()
    ended = await status(socket)
    assert ended == {"type": "status", "state": "closed", "message": "shell gone"}
    closed = await database_sync_to_async(TerminalSession.objects.get)(pk=session.pk)
    assert closed.status == TerminalStatus.CLOSED and closed.close_reason == "shell gone"


async def test_a_replayed_agent_socket_is_refused(user):
    pod, node_token = await setup(user)
    socket = browser(pod.pk, user)
    await socket.connect()
    session, token = await session_and_token(pod)
    first = agent(session.pk, node_token, token)
    assert (await first.connect())[0]

    assert (await agent(session.pk, node_token, token).connect())[0] is False
    await first.disconnect()
    await socket.disconnect()


async def test_an_idle_session_closes_and_so_does_the_agent_side(user, settings):
    settings.POD_TERMINAL_IDLE_TIMEOUT_S = 0.3
    pod, node_token = await setup(user)
    socket = browser(pod.pk, user)
    await socket.connect()
    await status(socket)  # waiting
    session, token = await session_and_token(pod)
    shell = agent(session.pk, node_token, token)
    await shell.connect()
    assert (await status(socket))["state"] == "open"

    ended = await status(socket)  # nobody types, nothing is printed

    assert ended["state"] == "closed" and "idle" in ended["message"]
    assert (await shell.receive_output(timeout=5))["type"] == "websocket.close"
    closed = await database_sync_to_async(TerminalSession.objects.get)(pk=session.pk)
    assert closed.status == TerminalStatus.CLOSED and "idle" in closed.close_reason


async def test_a_node_that_never_dials_in_ends_the_wait(user, settings):
    settings.POD_TERMINAL_OPEN_TIMEOUT_S = 0.3
    pod, _ = await setup(user)
    socket = browser(pod.pk, user)
    await socket.connect()
    await status(socket)  # waiting

    ended = await status(socket)

    assert ended["state"] == "closed" and "did not connect" in ended["message"]


async def test_the_routes_are_the_ones_config_serves():
    assert {p.pattern.describe() for p in websocket_urlpatterns} == {
        "'ws/pods/<uuid:pod_id>/terminal'",
        "'ws/agent/terminal/<uuid:session_id>'",
    }
