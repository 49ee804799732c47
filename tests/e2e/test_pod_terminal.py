"""The browser terminal end to end: a real Chromium on the pod's terminal page, our ASGI app
(Channels), a real agent that dials back on OPEN_TERMINAL, and `docker exec` in the pod's real
container. The owner types `echo $((6*7))` and reads 42; another user gets nothing."""

import re

import pytest
from playwright.sync_api import expect

from apps.nodes.models import CommandStatus, CommandType, NodeCommand
from apps.podconnect.models import TerminalSession, TerminalStatus
from apps.pods.models import PodEvent
from tests.e2e.pod_connect_conftest import (  # noqa: F401 - fixtures
    asgi_server,  # noqa: F811
    browser_login,
    connect_agent,  # noqa: F811
    running_pod,
)
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

FORTY_TWO = re.compile(r"^\s*42\s*$")


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user(email="owner@example.com", password="x-2026-pw")


@pytest.fixture
def intruder(django_user_model):
    return django_user_model.objects.create_user(email="other@example.com", password="x-2026-pw")


def test_owner_runs_a_command_in_the_browser_terminal(
    page,
    asgi_server,  # noqa: F811
    connect_agent,  # noqa: F811
    busybox_image,
    cleanup_containers,
    owner,
    settings,
):
    settings.POD_TERMINAL_IDLE_TIMEOUT_S = 300
    node = connect_agent()
    pod = running_pod(owner, node, busybox_image, ["sleep", "600"])
    browser_login(page, asgi_server.url, owner)

    page.goto(f"{asgi_server.url}/pods/{pod.pk}/")
    page.get_by_test_id("connect").get_by_role("link", name="Terminal").click()
    expect(page.locator("#terminal-status")).to_have_attribute("data-state", "open")
    page.locator("#terminal .xterm-helper-textarea").focus()
    page.keyboard.type("echo $((6*7))")
    page.keyboard.press("Enter")

    expect(page.locator("#terminal .xterm-rows > div").filter(has_text=FORTY_TWO)).to_have_count(1)
    session = TerminalSession.objects.get(pod=pod)
    assert session.user == owner and session.status == TerminalStatus.OPEN
    command = NodeCommand.objects.get(pk=session.command_id)
    assert command.type == CommandType.OPEN_TERMINAL
    assert command.payload["token"] == ""  # the one-time token is wiped once used
    wait_for(
        lambda: NodeCommand.objects.filter(pk=command.pk, status=CommandStatus.ACKED).exists(),
        "the open_terminal ack",
    )
    assert PodEvent.objects.filter(pod=pod, reason__contains=f"opened by {owner.email}").exists()

    page.goto(f"{asgi_server.url}/pods/{pod.pk}/")  # leaving the page ends the session
    wait_for(
        lambda: TerminalSession.objects.filter(
            pk=session.pk, status=TerminalStatus.CLOSED
        ).exists(),
        "the session closed",
    )
    page.goto("about:blank")  # the pod page polls its status; the server stops before the page


def test_another_user_gets_no_terminal(
    page,
    browser_guard,
    asgi_server,  # noqa: F811
    connect_agent,  # noqa: F811
    busybox_image,
    cleanup_containers,
    owner,
    intruder,  # noqa: F811
):
    node = connect_agent()
    pod = running_pod(owner, node, busybox_image, ["sleep", "600"])
    browser_login(page, asgi_server.url, intruder)
    browser_guard.allow(r"404|WebSocket connection to .* failed")

    response = page.goto(f"{asgi_server.url}/pods/{pod.pk}/terminal/")
    assert response.status == 404
    # Straight at the socket, from a page of our origin with the intruder's session.
    page.goto(f"{asgi_server.url}/pods/")
    outcome = page.evaluate(
        """(path) => new Promise((resolve) => {
            const socket = new WebSocket("ws://" + location.host + path);
            const frames = [];
            socket.onmessage = (event) => frames.push(String(event.data));
            socket.onopen = () => frames.push("open");
            socket.onclose = (event) => resolve({code: event.code, frames: frames});
        })""",
        f"/ws/pods/{pod.pk}/terminal",
    )

    page.goto("about:blank")  # the pods list polls; the server stops before the page
    assert outcome["frames"] == []  # refused at the handshake: never opened, nothing sent
    assert outcome["code"] == 1006
    assert not TerminalSession.objects.exists()
    assert not NodeCommand.objects.filter(type=CommandType.OPEN_TERMINAL).exists()
