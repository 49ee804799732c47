"""Relaying one admitted `/v1` request to a replica and its answer back, whole or chunk by chunk
as it arrives, as a `Proxied` answer that either front end sends (the raw ASGI fast path,
apps/proxy/fastpath.py, or the ninja views, apps/proxy/api.py).

What happens once a request is over, whatever way it ends, is in one place (`_Outcome`): its
usage row is buffered (never written on the request path) and its tokens count against its
key's monthly budget. A held request's cold start is recorded when its first byte goes out."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from apps.catalog.load import month_key
from apps.core import metrics
from apps.proxy.admission import Admission
from apps.proxy.hold import record_cold_start
from apps.proxy.keys import guard
from apps.proxy.routing import DeploymentRoute, ProxyError, UsageEntry, usage_buffer
from apps.proxy.upstream import STREAM_ERRORS, UpstreamCall, open_upstream

logger = logging.getLogger(__name__)

PASS_HEADERS = ("content-type", "x-sample-rate", "content-disposition")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


@dataclass
class Proxied:
    """A replica's answer to send to the client: `body` whole, or `chunks` as they come
    (iterate it to the end or `aclose` it: its end records the request's usage)."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: AsyncGenerator[bytes, None] | None = None


_PROMPT_TOKENS = re.compile(rb'"(?:prompt|input)_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"(?:completion|output)_tokens"\s*:\s*(\d+)')


def usage_in(body: bytes) -> tuple[int, int]:
    """Token counts of the `usage` object at the end of an OpenAI response body, found without
    parsing the whole body (an embeddings answer can be megabytes of floats)."""
    at = body.rfind(b'"usage"')
    if at < 0:
        return 0, 0
    tail = body[at : at + 1000]
    prompt = _PROMPT_TOKENS.search(tail)
    completion = _COMPLETION_TOKENS.search(tail)
    return (
        int(prompt.group(1)) if prompt else 0,
        int(completion.group(1)) if completion else 0,
    )


def _usage_of(data: Any) -> tuple[int, int]:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens") or usage.get("input_tokens") or 0
    completion = usage.get("completion_tokens") or usage.get("output_tokens") or 0
    return (
        prompt if isinstance(prompt, int) else 0,
        completion if isinstance(completion, int) else 0,
    )


def sse_error(message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


# A streamed piece of generated text: a chat delta's or a completion choice's non-empty
# `content` / `text` (`"reasoning_content"` and empty or null values do not match).
_CONTENT_PIECE = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')


class StreamUsage:
    """Token counts found in an SSE stream: the `usage` object when the server sends one
    (OpenAI's `stream_options.include_usage`), else the number of pieces of generated text
    (one token each, as vLLM and llama.cpp stream them; a role-only first chunk, the final
    `finish_reason` chunk and `[DONE]` carry none)."""

    def __init__(self) -> None:
        self.prompt = 0
        self.completion = 0
        self.pieces = 0
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > 1 << 20:  # no newline in a megabyte: not SSE worth reading
            self._partial = b""
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            if b'"usage"' in line:
                try:
                    prompt, completion = _usage_of(json.loads(line[5:]))
                except ValueError:
                    prompt = completion = 0
                if prompt or completion:
                    self.prompt, self.completion = prompt, completion
            self.pieces += len(_CONTENT_PIECE.findall(line))


class _Outcome:
    """How one forwarded request ended: its usage row and its key's tokens, recorded once."""

    def __init__(self, admission: Admission, route: DeploymentRoute, endpoint: str, stream: bool):
        self.admission = admission
        self.route = route
        self.endpoint = endpoint
        self.streamed = stream
        self.started = time.perf_counter()
        self.first_byte_ms: float | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def first_byte(self) -> None:
        if self.first_byte_ms is None:
            self.first_byte_ms = self.elapsed_ms()
            if self.admission.held is not None:
                record_cold_start(self.admission.held, endpoint=self.endpoint)

    def record(
        self,
        *,
        status: int,
        replica_id: int | None = None,
        prompt: int = 0,
        completion: int = 0,
        error: str = "",
    ) -> None:
        usage_buffer.record(
            UsageEntry(
                deployment_id=self.route.id,
                replica_id=replica_id,
                endpoint=self.endpoint,
                status_code=status,
                latency_ms=self.elapsed_ms(),
                first_byte_ms=self.first_byte_ms,
                prompt_tokens=prompt,
                completion_tokens=completion,
                streamed=self.streamed,
                error=error,
            )
        )
        if status < 400 and prompt + completion > 0:
            guard.tokens.add(month_key(self.admission.identity.key_id), prompt + completion)


def _headers_of(call: UpstreamCall, *, streamed: bool) -> dict[str, str]:
    upstream = call.response.headers
    out = {name: upstream[name] for name in PASS_HEADERS if name in upstream}
    out["X-Replica-Id"] = str(call.replica.replica_id)
    out.update(SECURITY_HEADERS)
    if streamed:
        out["X-Accel-Buffering"] = "no"  # no buffering by a reverse proxy in front of us
    return out


async def forward(
    admission: Admission,
    route: DeploymentRoute,
    *,
    endpoint: str,
    raw: bytes,
    content_type: str,
    accept: str,
    stream: bool,
) -> Proxied:
    """Send the body to a replica and answer with what it answers: whole, or chunk by chunk."""
    metrics.observe_proxy_overhead(time.perf_counter())
    outcome = _Outcome(admission, route, endpoint, stream)
    try:
        call = await open_upstream(
            route,
            method="POST",
            path="/v1/" + endpoint,
            content=raw,
            headers={"content-type": content_type, "accept": accept},
        )
    except ProxyError as exc:
        outcome.record(status=exc.status, error=exc.code)
        raise
    upstream = call.response
    status = upstream.status
    if not stream or status >= 400:
        outcome.streamed = False
        try:
            body = await upstream.read()
        finally:
            await call.aclose()
        outcome.first_byte()
        prompt, completion = usage_in(body) if status < 400 else (0, 0)
        outcome.record(
            status=status,
            replica_id=call.replica.replica_id,
            prompt=prompt,
            completion=completion,
            error="" if status < 400 else f"upstream_{status}",
        )
        return Proxied(status=status, headers=_headers_of(call, streamed=False), body=body)

    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")

    async def relay() -> AsyncGenerator[bytes, None]:
        usage = StreamUsage()
        error = ""
        try:
            async for chunk in upstream.content.iter_any():
                outcome.first_byte()
                if is_sse:
                    usage.feed(chunk)
                yield chunk
        except STREAM_ERRORS as exc:
            # The replica died mid-stream. What was sent cannot be taken back, so no retry: end
            # with an error event (the openai SDK raises APIError on it) rather than a stream
            # that just stops and looks complete.
            error = "upstream_disconnected"
            logger.warning("proxy: stream from replica %s broke: %s", call.replica.replica_id, exc)
            if is_sse:
                yield sse_error(
                    "The model server stopped in the middle of the answer; retry.", error
                )
        except (GeneratorExit, asyncio.CancelledError):
            error = "client_cancelled"  # the client hung up mid-stream
            raise
        finally:
            await call.aclose()
            outcome.record(
                status=status,
                replica_id=call.replica.replica_id,
                prompt=usage.prompt,
                completion=usage.completion or usage.pieces,
                error=error,
            )

    return Proxied(status=status, headers=_headers_of(call, streamed=True), chunks=relay())
