"""The port proxy's leg to the pod: a small HTTP/1.1 client on asyncio streams.

A general client (httpx: httpcore + h11 + anyio) costs several Python layers per 64 KiB read;
for a 100 MB download through the proxy that was half the throughput of reading the pod
directly (bench/port_proxy.py). Here a body is relayed as the socket gives it, up to 1 MiB a
read, with the framing HTTP/1.1 needs and no more: Content-Length, chunked, or read to the end.

- Keep-alive: connections go back to a per-(host, port) pool when the response was framed and
  neither side said `Connection: close`. A request without a body that finds its pooled
  connection closed by the app (idle keep-alive ended) is retried once on a new connection;
  a request with a body always takes a new connection (its body cannot be replayed).
- The request body is written while the response is read (an app may answer while it still
  reads, as an echo does; writing first could deadlock both).
- Timeouts: connecting, and every read (the gap the app may leave between two chunks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

# The stream's buffer limit: a response head must fit, and the socket is read ahead up to
# twice this much (bigger reads, fewer messages to the ASGI server per megabyte).
STREAM_LIMIT = 512 * 1024
READ_BYTES = 1024 * 1024
POOL_IDLE_S = 4.0  # apps close idle keep-alive connections after ~5 s (uvicorn, gunicorn)
POOL_MAX_IDLE = 64


class UpstreamError(Exception):
    """The app could not be reached or broke the protocol; the message says how."""


class UpstreamTimeoutError(UpstreamError):
    pass


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        self.writer.close()


class Pool:
    """Idle keep-alive connections per (host, port), for one event loop."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Conn]] = {}

    async def take(
        self, host: str, port: int, timeout: float, *, reuse: bool
    ) -> tuple[_Conn, bool]:
        """A connection and whether it was pooled."""
        stack = self._idle.get((host, port))
        while reuse and stack:
            conn = stack.pop()
            fresh = time.monotonic() - conn.idle_since < POOL_IDLE_S
            if fresh and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.close()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}") from exc
        return _Conn(reader, writer), False

    def give_back(self, host: str, port: int, conn: _Conn) -> None:
        stack = self._idle.setdefault((host, port), [])
        if len(stack) >= POOL_MAX_IDLE:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        stack.append(conn)


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes]


def _head(method: str, target: str, headers: list[tuple[bytes, bytes]], chunked: bool) -> bytes:
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1")]
    lines += [name + b": " + value for name, value in headers]
    if chunked:
        lines.append(b"transfer-encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _read_head(
    reader: asyncio.StreamReader, timeout: float
) -> tuple[int, bool, list[tuple[bytes, bytes]]]:
    """(status, HTTP/1.1?, headers) of the next final response (1xx ones are skipped)."""
    while True:
        try:
            async with asyncio.timeout(timeout):
                raw = await reader.readuntil(b"\r\n\r\n")
        except TimeoutError as exc:
            raise UpstreamTimeoutError("the app sent no response in time") from exc
        except asyncio.LimitOverrunError as exc:
            raise UpstreamError("the app's response head is too large") from exc
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise UpstreamError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise UpstreamError(f"malformed header line: {line[:80]!r}")
            headers.append((name.strip().lower(), value.strip()))
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue and other interim answers
        return status, parts[0] == b"HTTP/1.1", headers


async def _write_body(
    writer: asyncio.StreamWriter, body: AsyncIterator[bytes], chunked: bool
) -> None:
    async for chunk in body:
        if not chunk:
            continue
        if chunked:
            writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        else:
            writer.write(chunk)
        await writer.drain()
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def send(
    pool: Pool,
    *,
    host: str,
    port: int,
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]],
    body: AsyncIterator[bytes] | None,
    body_length: int | None,
    connect_timeout: float,
    read_timeout: float,
) -> Response:
    """Send the request; the response with its body still to be read (read it to the end, or
    `aclose()` it, so its connection is pooled or closed)."""
    chunked = body is not None and body_length is None
    head = _head(method, target, headers, chunked)
    for attempt in (0, 1):
        conn, pooled = await pool.take(host, port, connect_timeout, reuse=body is None)
        conn.writer.write(head)
        sender = (
            asyncio.create_task(_write_body(conn.writer, body, chunked))
            if body is not None
            else None
        )
        try:
            status, http11, response_headers = await _read_head(conn.reader, read_timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            conn.close()
            if sender is not None:
                sender.cancel()
            if pooled and attempt == 0:
                continue  # the app closed the idle connection: once more on a new one
            raise UpstreamError(f"the app closed the connection: {exc}") from exc
        except BaseException:
            conn.close()
            if sender is not None:
                sender.cancel()
            raise
        return Response(
            status,
            response_headers,
            _body(pool, host, port, conn, sender, method, status, http11, response_headers,
                  read_timeout),
        )  # fmt: skip
    raise AssertionError("unreachable")  # noqa: S101 - the loop returns or raises


async def _read_some(reader: asyncio.StreamReader, n: int, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(n)
    except TimeoutError as exc:
        raise UpstreamTimeoutError("the app stopped sending mid-body") from exc


async def _body(
    pool: Pool,
    host: str,
    port: int,
    conn: _Conn,
    sender: asyncio.Task[None] | None,
    method: str,
    status: int,
    http11: bool,
    headers: list[tuple[bytes, bytes]],
    timeout: float,
) -> AsyncIterator[bytes]:
    values = dict(headers)
    reusable = http11 and b"close" not in values.get(b"connection", b"").lower()
    reader = conn.reader
    done = False
    try:
        if method == "HEAD" or status in (204, 304):
            pass
        elif b"chunked" in values.get(b"transfer-encoding", b"").lower():
            while True:
                async with asyncio.timeout(timeout):
                    line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    async with asyncio.timeout(timeout):
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers: dropped
                    break
                while size:
                    data = await _read_some(reader, min(size, READ_BYTES), timeout)
                    if not data:
                        raise UpstreamError("the app closed mid-chunk")
                    size -= len(data)
                    yield data
                async with asyncio.timeout(timeout):
                    await reader.readexactly(2)
        elif b"content-length" in values:
            left = int(values[b"content-length"])
            while left > 0:
                data = await _read_some(reader, min(left, READ_BYTES), timeout)
                if not data:
                    raise UpstreamError("the app closed before the end of its body")
                left -= len(data)
                yield data
        else:
            reusable = False  # delimited by the end of the connection
            while data := await _read_some(reader, READ_BYTES, timeout):
                yield data
        done = True
    except ValueError as exc:  # a chunk size or Content-Length that is not a number
        raise UpstreamError(f"the app's body framing is malformed: {exc}") from exc
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
            reusable = False
        elif sender is not None and (sender.cancelled() or sender.exception() is not None):
            reusable = False
        if done and reusable:
            pool.give_back(host, port, conn)
        else:
            conn.close()
