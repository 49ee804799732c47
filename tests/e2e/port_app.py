"""A small web app for the port-proxy tests and bench, run INSIDE a pod's container (the local
host-python image, host network) as `python port_app.py --port N`:

- `GET /…` (any other path): JSON of what the app received (path, query, cookie, forwarded
  headers), with the app's own `X-Frame-Options: SAMEORIGIN`;
- `POST /echo`: the request body back, streamed as it arrives;
- `GET /bytes?n=N`: N bytes, streamed in 64 KiB chunks (the bench's download);
- WebSocket `/ws`: every message echoed back, text as text and bytes as bytes.

ASGI under uvicorn; the standard library plus uvicorn (and its `websockets`)."""

import argparse
import json
from typing import Any
from urllib.parse import parse_qs

import uvicorn

CHUNK = b"x" * 65536


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
        return
    path = scope["path"]
    if path.endswith("/echo") and scope["method"] == "POST":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send(
                {"type": "http.response.body", "body": message.get("body", b""), "more_body": True}
            )
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
        return
    if path.endswith("/bytes"):
        total = int(parse_qs(scope["query_string"].decode()).get("n", ["0"])[0])
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(total).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        left = total
        while left > 0:
            part = CHUNK[: min(left, len(CHUNK))]
            left -= len(part)
            await send({"type": "http.response.body", "body": part, "more_body": left > 0})
        if total == 0:
            await send({"type": "http.response.body", "body": b""})
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps(
        {
            "path": path,
            "query": scope["query_string"].decode(),
            "cookie": headers.get("cookie", ""),
            "host": headers.get("host", ""),
            "x_forwarded_prefix": headers.get("x-forwarded-prefix", ""),
            "x_pod_token": headers.get("x-pod-token", ""),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-frame-options", b"SAMEORIGIN"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    if not scope["path"].endswith("/ws"):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message.get("text") or ""})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
