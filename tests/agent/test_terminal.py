"""The agent's side of browser terminals without a server: the open_terminal payload, the
socket URL, and what is acked when the server cannot be reached. With the real server and
`docker exec`: tests/e2e/test_pod_terminal.py."""

from __future__ import annotations

import socket

import pytest

from agent.commands import Command, CommandRunner, PayloadError, parse_terminal_request
from agent.runtime import DockerRuntime
from agent.terminal import TerminalError, TerminalManager, TerminalRequest, terminal_url

POD = "0b7c8d5e-1111-4222-8333-444455556666"
SESSION = "5f0c1c2d-aaaa-4bbb-8ccc-123456789abc"


def test_payload_is_validated_field_by_field() -> None:
    good = {"pod_id": POD, "session_id": SESSION, "token": "tt_x"}
    assert parse_terminal_request(good) == TerminalRequest(POD, SESSION, "tt_x")
    with pytest.raises(PayloadError, match="session_id"):
        parse_terminal_request({**good, "session_id": ""})
    with pytest.raises(PayloadError, match="token"):
        parse_terminal_request({**good, "token": ""})  # wiped once used
    with pytest.raises(PayloadError, match="pod_id"):
        parse_terminal_request({**good, "pod_id": None})


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ("http://127.0.0.1:8000", f"ws://127.0.0.1:8000/ws/agent/terminal/{SESSION}"),
        ("https://gpu.example.com/", f"wss://gpu.example.com/ws/agent/terminal/{SESSION}"),
        ("https://example.com/cloud", f"wss://example.com/cloud/ws/agent/terminal/{SESSION}"),
    ],
)
def test_socket_url_follows_the_server_url(server: str, url: str) -> None:
    assert terminal_url(server, SESSION) == url


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when this returns


def test_an_unreachable_server_fails_the_command_with_the_reason() -> None:
    runtime = DockerRuntime()  # never reached: the socket fails first
    terminals = TerminalManager(
        runtime, f"http://127.0.0.1:{_closed_port()}", node_token=lambda: "nt_x"
    )
    runner = CommandRunner(runtime, terminals=terminals)
    command = Command(
        id="c1",
        type="open_terminal",
        payload={"pod_id": POD, "session_id": SESSION, "token": "tt_x"},
    )

    runner.submit(command, "node-1")
    runner.wait_finished(timeout=30)
    assert runner.is_in_flight("c1")  # finished, its ack not yet taken: not to be run again
    [(_, body)] = runner.take_finished()

    assert body["status"] == "failed"
    assert "could not reach the server's terminal socket" in body["error"]
    assert not runner.is_in_flight("c1")
    assert terminals.open_sessions() == 0


def test_without_a_node_token_nothing_is_dialled() -> None:
    terminals = TerminalManager(DockerRuntime(), "http://127.0.0.1:1", node_token=lambda: None)
    with pytest.raises(TerminalError, match="no node token"):
        terminals.open(TerminalRequest(POD, SESSION, "tt_x"))
