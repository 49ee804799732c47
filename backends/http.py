"""Just enough ASGI for small JSON/SSE/audio servers: read a body, answer JSON, stream chunks,
parse multipart forms (stdlib `email`), and a route table."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from email import policy
from email.parser import BytesParser
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class HttpError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


class Request:
    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.body = body
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HttpError(400, f"Body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise HttpError(400, "Body must be a JSON object.")
        return data

    def form(self) -> dict[str, Any]:
        """multipart/form-data fields: text fields as str, files as (filename, bytes)."""
        content_type = self.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise HttpError(400, "Expected multipart/form-data.")
        message = BytesParser(policy=policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + self.body
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not name:
                continue
            payload: Any = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                fields[str(name)] = (filename, payload)
            else:
                fields[str(name)] = payload.decode("utf-8", errors="replace")
        return fields


class Response:
    def __init__(
        self,
        body: bytes | AsyncIterator[bytes] = b"",
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type
        self.headers = headers or {}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data).encode(), status=status)


def error_response(exc: HttpError) -> Response:
    kind = "invalid_request_error" if exc.status < 500 else "server_error"
    return json_response(
        {"error": {"message": exc.message, "type": kind, "param": exc.param, "code": None}},
        status=exc.status,
    )


Handler = Callable[[Request], Awaitable[Response]]


class App:
    """A route table of (method, path) → handler, served as an ASGI app."""

    def __init__(self, routes: dict[tuple[str, str], Handler]) -> None:
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = Request(scope, b"".join(chunks))
        handler = self.routes.get((request.method, request.path.rstrip("/") or "/"))
        try:
            if handler is None:
                raise HttpError(404, f"No route for {request.method} {request.path}.")
            response = await handler(request)
        except HttpError as exc:
            response = error_response(exc)
        await _send(response, send)


async def _send(response: Response, send: Send) -> None:
    headers = [(b"content-type", response.content_type.encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in response.headers.items()]
    if isinstance(response.body, bytes):
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        return
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    async for chunk in response.body:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def sse(data: Any) -> bytes:
    """One server-sent event carrying `data` as JSON (or a literal like `[DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def words(text: str) -> int:
    return len(text.split())


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise HttpError(400, "'messages' must be a non-empty list.", param="messages")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, dict)
                ).strip()
            return str(content or "")
    return ""
