"""Browser terminals: a ``docker exec`` TTY in a pod's container, joined to a short-lived
WebSocket that the agent dials out to the server (``/ws/agent/terminal/<session>``).

The server asks for one with an ``open_terminal`` command carrying the session id and a
one-time token. ``TerminalManager.open`` (run on a command worker thread) connects the socket,
starts the exec and hands both to two daemon threads, then returns, so the command is acked
at once and the pod's other commands are not held up. Binary frames are terminal bytes both
ways; text frames are JSON control messages: ``{"type": "resize", "cols", "rows"}`` from the
server, ``{"type": "error", "message"}`` from us when no shell could be started. The session
ends when either side closes: the shell exiting closes the socket, the socket closing (the
server's idle timeout, the browser leaving) closes the exec's stream, which hangs up the
shell. Nothing here imports Django.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from docker.errors import DockerException  # type: ignore[import-untyped, unused-ignore]
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from agent.client import NODE_AUTH_HEADER
from agent.log import log
from agent.runtime import ContainerMissingError, ContainerRuntimeError, DockerRuntime

logger = logging.getLogger("agent.terminal")

OPEN_TERMINAL = "open_terminal"
TERMINAL_PATH = "/ws/agent/terminal/{session}"
TOKEN_HEADER = "X-Terminal-Token"  # noqa: S105 - a header name
READ_CHUNK = 64 * 1024
OPEN_TIMEOUT_S = 10.0
# A shell that exists in any image, preferring bash where there is one.
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"]


class TerminalError(ContainerRuntimeError):
    """No terminal could be opened; the message says why (it goes into the ack)."""


@dataclass(frozen=True)
class TerminalRequest:
    pod_id: str
    session_id: str
    token: str


def terminal_url(server_url: str, session_id: str) -> str:
    """``http(s)://host[:port][/prefix]`` → ``ws(s)://host[:port][/prefix]/ws/agent/…``."""
    parts = urlsplit(server_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + TERMINAL_PATH.format(session=session_id)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


class _Session:
    """One open terminal: the socket to the server and the exec's raw stream."""

    def __init__(
        self,
        request: TerminalRequest,
        ws: ClientConnection,
        stream: Any,
        exec_id: str,
        api: Any,
        on_end: Callable[[str], None],
    ) -> None:
        self.request = request
        self.ws = ws
        self.stream = stream  # docker's socket wrapper; the raw socket is its ``_sock``
        self.sock: socket.socket = getattr(stream, "_sock", stream)
        self.exec_id = exec_id
        self.api = api
        self.on_end = on_end
        self.ended = threading.Event()

    def start(self) -> None:
        name = f"terminal-{self.request.session_id[:8]}"
        threading.Thread(target=self._shell_to_server, name=f"{name}-out", daemon=True).start()
        threading.Thread(target=self._server_to_shell, name=f"{name}-in", daemon=True).start()

    def _shell_to_server(self) -> None:
        try:
            while True:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    break
                self.ws.send(data)
        except (OSError, ConnectionClosed):
            pass
        finally:
            self.close("shell ended")

    def _server_to_shell(self) -> None:
        try:
            for message in self.ws:
                if isinstance(message, bytes):
                    self.sock.sendall(message)
                else:
                    self._control(message)
        except (OSError, ConnectionClosed):
            pass
        finally:
            self.close("server closed")

    def _control(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != "resize":
            return
        cols, rows = message.get("cols"), message.get("rows")
        if isinstance(cols, int) and isinstance(rows, int) and 0 < cols < 1000 and 0 < rows < 1000:
            try:
                self.api.exec_resize(self.exec_id, height=rows, width=cols)
            except (DockerException, OSError) as exc:
                log(logger, logging.DEBUG, "terminal.resize_failed", error=str(exc))

    def close(self, why: str) -> None:
        if self.ended.is_set():
            return
        self.ended.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.stream.close()
        except OSError:
            pass
        self.ws.close()
        log(logger, logging.INFO, "terminal.closed", session_id=self.request.session_id, why=why)
        self.on_end(self.request.session_id)


class TerminalManager:
    """Opens terminals on request and closes them all when the agent stops."""

    def __init__(
        self,
        runtime: DockerRuntime,
        server_url: str,
        node_token: Callable[[], str | None],
        *,
        shell: list[str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.server_url = server_url
        self.node_token = node_token
        self.shell = list(shell or SHELL)
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}

    def open(self, request: TerminalRequest) -> dict[str, Any]:
        """Dial the server, start the shell, relay on background threads; the ack's result.
        Raises ``TerminalError`` (the ack's error) when the socket or the shell cannot open;
        when the socket is open, the reason is sent over it first for the user to read."""
        token = self.node_token()
        if not token:
            raise TerminalError("the agent has no node token")
        url = terminal_url(self.server_url, request.session_id)
        try:
            ws = connect(
                url,
                additional_headers={NODE_AUTH_HEADER: token, TOKEN_HEADER: request.token},
                open_timeout=OPEN_TIMEOUT_S,
                compression=None,
                max_size=4 * READ_CHUNK,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise TerminalError(f"could not reach the server's terminal socket: {exc}") from exc
        try:
            exec_id, stream, api = self._start_shell(request.pod_id)
        except ContainerRuntimeError as exc:
            try:
                ws.send(json.dumps({"type": "error", "message": str(exc)}))
            except ConnectionClosed:
                pass
            ws.close()
            raise
        session = _Session(request, ws, stream, exec_id, api, self._forget)
        with self._lock:
            self._sessions[request.session_id] = session
        session.start()
        log(
            logger,
            logging.INFO,
            "terminal.opened",
            session_id=request.session_id,
            pod_id=request.pod_id,
        )
        return {"session_id": request.session_id, "exec_id": exec_id}

    def _start_shell(self, pod_id: str) -> tuple[str, Any, Any]:
        container = self.runtime.find(pod_id)
        if container is None:
            raise ContainerMissingError(f"pod {pod_id} has no container on this node")
        if container.status != "running":
            raise TerminalError(f"pod {pod_id}'s container is {container.status}, not running")
        api = self.runtime.client.api
        try:
            exec_id = api.exec_create(
                container.id,
                self.shell,
                stdin=True,
                tty=True,
                environment=["TERM=xterm-256color"],
            )["Id"]
            stream = api.exec_start(exec_id, tty=True, socket=True)
        except (DockerException, OSError) as exc:
            raise TerminalError(f"docker exec failed: {exc}") from exc
        return exec_id, stream, api

    def _forget(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def open_sessions(self) -> int:
        with self._lock:
            return len(self._sessions)

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close("agent stopping")
