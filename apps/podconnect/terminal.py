"""The browser terminal's two WebSockets (Channels consumers), joined through the channel layer
so that they may live in different web processes:

    browser ──/ws/pods/<pod>/terminal──▶ TerminalBrowserConsumer
                                                 ▲ │  channel layer (terminal.* messages)
                                                 │ ▼
    agent ──/ws/agent/terminal/<session>──▶ TerminalAgentConsumer ──▶ `docker exec` TTY

Frames: binary frames carry terminal bytes both ways; text frames carry JSON control messages
(browser → server: `{"type": "resize", "cols", "rows"}`; server → browser: `{"type":
"status", "state": "waiting|open|closed|error", "message"}`). The browser side owns the session's
timers: the agent must dial in within POD_TERMINAL_OPEN_TIMEOUT_S and a session with neither
input nor output for POD_TERMINAL_IDLE_TIMEOUT_S closes.

When both sockets of a session land in the same web process (always, with one), the two
consumers call each other directly instead: through Redis every keystroke would cost two
channel-layer hops, and channels_redis serialises the receives of all of a process's consumers
(measured: 20 open terminals, p50 133 ms through Redis against 30 ms in-process;
bench/terminal.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, TypeGuard

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.podconnect import services

logger = logging.getLogger(__name__)

MAX_PENDING_INPUT_BYTES = 64 * 1024  # typed before the agent connected
CHANNEL_FULL_RETRY_S = 0.005
CHANNEL_FULL_GIVE_UP_S = 10.0
CLOSE_REFUSED = 4409  # the pod cannot take a terminal now (JSON status says why)
CLOSE_TIMEOUT = 4408  # idle, or the agent never came


async def relay(layer: Any, channel: str, message: dict[str, Any]) -> None:
    """Send on the channel layer; when the peer's inbox is full, wait for it to drain (this
    consumer stops reading its socket meanwhile: backpressure to the sender)."""
    deadline = time.monotonic() + CHANNEL_FULL_GIVE_UP_S
    while True:
        try:
            await layer.send(channel, message)
            return
        except ChannelFull:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(CHANNEL_FULL_RETRY_S)


def _is_size(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 1000


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class _Relay(AsyncWebsocketConsumer):
    """What both sides share: sending `terminal.*` messages to the other side, directly when
    it lives in this process, else through the channel layer."""

    peer_channel: str | None = None
    local_peer: _Relay | None = None

    async def to_peer(self, message: dict[str, Any]) -> None:
        peer = self.local_peer
        if peer is not None:
            # The handler, not `dispatch`: that would hop to a thread to recycle database
            # connections, on every keystroke.
            await getattr(peer, message["type"].replace(".", "_"))(message)
        elif self.peer_channel is not None:
            await relay(self.channel_layer, self.peer_channel, message)


# Session id → the browser consumer waiting for (or joined to) its agent, in this process.
_browsers: dict[uuid.UUID, TerminalBrowserConsumer] = {}


class TerminalBrowserConsumer(_Relay):
    """The owner's browser. Anyone else is refused before the handshake completes."""

    session_id: uuid.UUID | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        pod_id = self.scope["url_route"]["kwargs"]["pod_id"]
        if user is None or not user.is_authenticated:
            await self.close()  # refused: HTTP 403 at the handshake
            return
        try:
            session = await database_sync_to_async(services.terminal_open)(
                user=user, pod_id=pod_id, browser_channel=self.channel_name
            )
        except services.PodNotFoundError:
            await self.close()  # another user's pod: refused like an unknown one
            return
        except services.TerminalRefusedError as exc:
            await self.accept()
            await self._status("error", str(exc))
            await self.close(code=CLOSE_REFUSED)
            return
        self.session_id = session.pk
        self.pending_input: list[bytes] = []
        self.pending_bytes = 0
        self.size: dict[str, int] | None = None
        self.last_activity = time.monotonic()
        self.closing = False
        _browsers[session.pk] = self
        await self.accept()
        await self._status(
            "waiting", "Waiting for the node to connect (it checks in on its next heartbeat)…"
        )
        self.watchdog = asyncio.create_task(self._watch())

    @property
    def attached(self) -> bool:
        return self.local_peer is not None or self.peer_channel is not None

    async def _status(self, state: str, message: str) -> None:
        await self.send(
            text_data=json.dumps({"type": "status", "state": state, "message": message})
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session_id is None or self.closing:
            return
        self.last_activity = time.monotonic()
        if bytes_data is not None:
            await self._input(bytes_data)
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "resize":
            cols, rows = message.get("cols"), message.get("rows")
            if _is_size(cols) and _is_size(rows):
                self.size = {"cols": cols, "rows": rows}
                if self.attached:
                    await self.to_peer({"type": "terminal.resize", **self.size})
        elif isinstance(message, dict) and message.get("type") == "input":
            data = message.get("data")
            if isinstance(data, str):
                await self._input(data.encode())

    async def _input(self, data: bytes) -> None:
        if self.attached:
            await self.to_peer({"type": "terminal.input", "data": data})
        elif self.pending_bytes + len(data) <= MAX_PENDING_INPUT_BYTES:
            self.pending_input.append(data)
            self.pending_bytes += len(data)

    # --- from the agent's side ---

    async def terminal_attached(self, event: dict[str, Any]) -> None:
        if self.local_peer is None:
            self.peer_channel = event["channel"]
        self.last_activity = time.monotonic()
        await self._status("open", "Connected.")
        if self.size:
            await self.to_peer({"type": "terminal.resize", **self.size})
        for data in self.pending_input:
            await self.to_peer({"type": "terminal.input", "data": data})
        self.pending_input = []

    async def terminal_output(self, event: dict[str, Any]) -> None:
        self.last_activity = time.monotonic()
        await self.send(bytes_data=event["data"])

    async def terminal_closed(self, event: dict[str, Any]) -> None:
        await self._end(event.get("reason") or "The session ended.", notify_agent=False)

    # --- timers and the end ---

    async def _watch(self) -> None:
        opened = time.monotonic()
        open_timeout = settings.POD_TERMINAL_OPEN_TIMEOUT_S
        idle_timeout = settings.POD_TERMINAL_IDLE_TIMEOUT_S
        tick = max(0.05, min(1.0, idle_timeout / 4, open_timeout / 4))
        while not self.closing:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if not self.attached and now - opened > open_timeout:
                await self._end(
                    f"The node did not connect within {open_timeout:.0f} s.", code=CLOSE_TIMEOUT
                )
            elif self.attached and now - self.last_activity > idle_timeout:
                await self._end(f"Closed after {idle_timeout:.0f} s idle.", code=CLOSE_TIMEOUT)

    async def _end(self, reason: str, *, code: int = 1000, notify_agent: bool = True) -> None:
        if self.closing:
            return
        self.closing = True
        if notify_agent:
            await self._notify_agent(reason)
        self._forget()
        if self.session_id is not None:
            await database_sync_to_async(services.terminal_close)(
                session_id=self.session_id, reason=reason
            )
        await self._status("closed", reason)
        await self.close(code=code)

    def _forget(self) -> None:
        if self.session_id is not None and _browsers.get(self.session_id) is self:
            del _browsers[self.session_id]

    async def _notify_agent(self, reason: str) -> None:
        if not self.attached:
            return
        try:
            await self.to_peer({"type": "terminal.closed", "reason": reason})
        except ChannelFull:
            logger.warning("terminal %s: agent side unreachable to close", self.session_id)
        self.local_peer = None

    async def disconnect(self, code: int) -> None:
        if self.session_id is None:
            return
        watchdog = getattr(self, "watchdog", None)
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        self._forget()
        if not self.closing:
            self.closing = True
            await self._notify_agent("The browser closed the terminal.")
            await database_sync_to_async(services.terminal_close)(
                session_id=self.session_id, reason="closed by the browser"
            )


class TerminalAgentConsumer(_Relay):
    """The agent's short-lived socket for one session: `X-Agent-API-Key` (its node token) and
    `X-Terminal-Token` (the session's one-time token) in the handshake, or it is refused."""

    session_id: uuid.UUID | None = None
    ended = False

    async def connect(self) -> None:
        session_id = self.scope["url_route"]["kwargs"]["session_id"]
        try:
            session = await database_sync_to_async(services.terminal_attach)(
                session_id=session_id,
                node_token=_header(self.scope, b"x-agent-api-key"),
                terminal_token=_header(self.scope, b"x-terminal-token"),
            )
        except services.TerminalAttachRefusedError as exc:
            logger.warning("terminal %s: agent refused: %s", session_id, exc)
            await self.close()
            return
        self.session_id = session.pk
        self.reason = "The shell ended."
        await self.accept()
        browser = _browsers.get(session.pk)
        if browser is not None:  # same process: join directly
            self.local_peer = browser
            browser.local_peer = self
        else:
            self.peer_channel = session.browser_channel
        await self.to_peer({"type": "terminal.attached", "channel": self.channel_name})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.ended:
            return
        if bytes_data is not None:
            await self.to_peer({"type": "terminal.output", "data": bytes_data})
            return
        try:
            message = json.loads(text_data or "")
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "error":
            self.reason = str(message.get("message") or "The node could not open a shell.")[:255]

    async def terminal_input(self, event: dict[str, Any]) -> None:
        await self.send(bytes_data=event["data"])

    async def terminal_resize(self, event: dict[str, Any]) -> None:
        await self.send(
            text_data=json.dumps({"type": "resize", "cols": event["cols"], "rows": event["rows"]})
        )

    async def terminal_closed(self, event: dict[str, Any]) -> None:
        self.ended = True  # the browser side is gone or going: nothing to tell it
        self.local_peer = None
        await self.close()

    async def disconnect(self, code: int) -> None:
        if self.session_id is None or self.ended:
            return
        self.ended = True
        try:
            await self.to_peer({"type": "terminal.closed", "reason": self.reason})
        except ChannelFull:
            logger.warning("terminal %s: browser side unreachable to close", self.session_id)
        self.local_peer = None
