"""Calling an ASGI app in-process with a `receive` that counts what the app reads of the body."""

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def http_scope(
    method: str, path: str, headers: dict[str, str] | None = None, scheme: str = "http"
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


class CountingReceive:
    """Hands out the body in `chunk`-sized messages (lazily) and counts the bytes the app took;
    after the body it waits, like a client that stays connected."""

    def __init__(self, total: int, chunk: int = 64 * 1024, payload: bytes | None = None):
        self.chunk = chunk
        self.payload = payload
        self.total = len(payload) if payload is not None else total
        self.bytes_read = 0
        self.calls = 0
        self._pieces_left: Iterator[bytes] | None = None
        self._closed = asyncio.Event()

    def _pieces(self) -> Iterator[bytes]:
        if self.payload is not None:
            for at in range(0, len(self.payload), self.chunk):
                yield self.payload[at : at + self.chunk]
            return
        left = self.total
        while left > 0:
            n = min(self.chunk, left)
            left -= n
            yield b"x" * n

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self._pieces_left is None:
            self._pieces_left = self._pieces()
        if self.bytes_read < self.total:
            piece = next(self._pieces_left)
            self.bytes_read += len(piece)
            return {
                "type": "http.request",
                "body": piece,
                "more_body": self.bytes_read < self.total,
            }
        if self.calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._closed.wait()
        return {"type": "http.disconnect"}


@dataclass
class Answer:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def call(app: Any, scope: dict[str, Any], receive: CountingReceive) -> Answer:
    answer = Answer()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", ())}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    await asyncio.wait_for(app(scope, receive, send), timeout=60)
    return answer
