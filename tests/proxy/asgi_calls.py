"""Watching what an ASGI app reads of request bodies, under a real server: `CountingApp` wraps
the app's `receive` and records, per request (tagged by an `x-test-tag` header), how many body
bytes the app took and the largest single message; `raw_exchange` sends a request over a plain
socket (any framing, chunked included) and stops sending once the server has answered."""

import select
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reads:
    bytes_read: int = 0
    messages: int = 0
    largest: int = 0


class CountingApp:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.reads: dict[str, Reads] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tag = dict(scope["headers"]).get(b"x-test-tag", b"").decode()
        with self._lock:
            reads = self.reads.setdefault(tag, Reads())

        async def counting_receive() -> dict[str, Any]:
            message = await receive()
            body = message.get("body", b"")
            if body:
                reads.bytes_read += len(body)
                reads.messages += 1
                reads.largest = max(reads.largest, len(body))
            return message

        await self.app(scope, counting_receive, send)


@dataclass
class Exchange:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent: int = 0  # body bytes the client got out before the server answered


def chunked(pieces: Iterable[bytes]) -> Iterable[bytes]:
    for piece in pieces:
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def raw_exchange(
    port: int, method: str, path: str, headers: dict[str, str], body: Iterable[bytes]
) -> Exchange:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        for piece in body:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending, as a well-behaved client does
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        payload = _dechunk(payload)
    return Exchange(status=int(status_line.split()[1]), headers=parsed, body=payload, sent=sent)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out
