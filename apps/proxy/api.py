"""`/v1`: the OpenAI-compatible API in front of deployments (django-ninja, async views).

A request is authenticated by its deployment key (`Authorization: Bearer sk_…` or
`X-API-Key`), checked against the key's deployment (`model` must be the deployment's
`model_name` and the deployment must serve the endpoint), counted against the deployment's
per-minute limit, and sent to the READY replica with the fewest outstanding requests (see
`routing` and `upstream`). Streaming answers (`stream: true`, and speech audio) are passed
through chunk by chunk as they arrive. Usage is recorded in the in-memory buffer, never written
to the database on the request path. Every refusal has OpenAI's error body and status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from io import BytesIO
from typing import Any

import httpx
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from ninja import NinjaAPI, Router
from pydantic import BaseModel, ValidationError

from apps.core import metrics
from apps.core.apidocs import LocalSwagger
from apps.proxy import admission, schemas
from apps.proxy.routing import (
    DeploymentRoute,
    InvalidRequestError,
    KeyIdentity,
    ModelNotFoundError,
    ProxyError,
    UsageEntry,
    router,
    usage_buffer,
)
from apps.proxy.upstream import UpstreamCall, open_upstream

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="OpenAI-compatible API",
    version="1",
    urls_namespace="openai",
    description="Point the official `openai` SDK at `/v1` with a deployment key (`sk_…`).",
    docs=LocalSwagger(),
)
v1 = Router(tags=["openai"])

PASS_HEADERS = ("content-type", "x-sample-rate", "content-disposition")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


# --- errors -------------------------------------------------------------------------------------


def proxy_error_response(exc: ProxyError) -> JsonResponse:
    response = JsonResponse(exc.body(), status=exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(exc.retry_after)
    for name, value in SECURITY_HEADERS.items():
        response[name] = value
    return response


@api.exception_handler(ProxyError)
def _proxy_error(request: HttpRequest, exc: ProxyError) -> HttpResponse:
    return proxy_error_response(exc)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("proxy: unexpected error on %s", request.path)
    return proxy_error_response(ProxyError("Internal error; it has been logged."))


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for a `/v1` path that does not exist, in OpenAI's error shape."""
    error = ProxyError(f"Unknown endpoint: {request.method} {request.path}.")
    error.status, error.type, error.code = 404, "invalid_request_error", "unknown_url"
    return proxy_error_response(error)


# --- request helpers ----------------------------------------------------------------------------


def credential(request: HttpRequest) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("X-API-Key") or None


def parse_json(raw: bytes, schema: type[BaseModel]) -> BaseModel:
    """The body checked against `schema`; a 400 naming the first bad field otherwise."""
    try:
        return schema.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error.get("loc", ())) or None
        if error.get("type") == "json_invalid":
            raise InvalidRequestError(f"The body is not valid JSON: {error['msg']}.") from exc
        raise InvalidRequestError(
            f"{param}: {error['msg']}" if param else str(error["msg"]), param=param
        ) from exc


async def authorize(request: HttpRequest, *, capability: str, model: str | None) -> DeploymentRoute:
    identity: KeyIdentity = await router.authenticate(credential(request))
    # The key's own limits; a deployment with no READY replica holds the request until it has
    # one (scale from zero).
    route = await admission.admit(request, identity, capability=capability, model=model)
    await router.check_rate(route)
    return route


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


def _headers_of(call: UpstreamCall) -> dict[str, str]:
    out = {
        name: call.response.headers[name] for name in PASS_HEADERS if name in call.response.headers
    }
    out["X-Replica-Id"] = str(call.replica.replica_id)
    out.update(SECURITY_HEADERS)
    return out


def sse_error(message: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


# A streamed piece of generated text: a chat delta's or a completion choice's non-empty
# `content` / `text` (`"reasoning_content"` and empty or null values do not match).
_CONTENT_PIECE = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')


class _Usage:
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


async def forward(
    request: HttpRequest,
    *,
    route: DeploymentRoute,
    endpoint: str,
    raw: bytes,
    content_type: str,
    stream: bool,
) -> HttpResponse | StreamingHttpResponse:
    """Send the body to a replica and answer with what it answers: whole, or chunk by chunk."""
    started = time.perf_counter()
    metrics.observe_proxy_overhead(started)
    headers = {"content-type": content_type, "accept": request.headers.get("Accept", "*/*")}
    try:
        call = await open_upstream(
            route, method="POST", path="/v1/" + endpoint, content=raw, headers=headers
        )
    except ProxyError as exc:
        usage_buffer.record(
            UsageEntry(
                deployment_id=route.id,
                endpoint=endpoint,
                status_code=exc.status,
                latency_ms=(time.perf_counter() - started) * 1000,
                streamed=stream,
                error=exc.code,
            )
        )
        raise
    upstream = call.response
    if not stream or upstream.status_code >= 400:
        try:
            body = await upstream.aread()
        finally:
            await call.aclose()
        prompt = completion = 0
        if upstream.status_code < 400:
            prompt, completion = usage_in(body)
        latency = (time.perf_counter() - started) * 1000
        usage_buffer.record(
            UsageEntry(
                deployment_id=route.id,
                replica_id=call.replica.replica_id,
                endpoint=endpoint,
                status_code=upstream.status_code,
                latency_ms=latency,
                first_byte_ms=latency,
                prompt_tokens=prompt,
                completion_tokens=completion,
                error="" if upstream.status_code < 400 else f"upstream_{upstream.status_code}",
            )
        )
        return HttpResponse(body, status=upstream.status_code, headers=_headers_of(call))

    is_sse = upstream.headers.get("content-type", "").startswith("text/event-stream")
    # Replicas are asked for identity (upstream.py); one that compresses anyway is decoded here,
    # since the client is sent the body without the replica's Content-Encoding.
    encoded = upstream.headers.get("content-encoding", "identity").lower() != "identity"
    chunks = upstream.aiter_bytes() if encoded else upstream.aiter_raw()

    async def relay() -> AsyncIterator[bytes]:
        usage = _Usage()
        first_byte_ms: float | None = None
        error = ""
        try:
            async for chunk in chunks:
                if first_byte_ms is None:
                    first_byte_ms = (time.perf_counter() - started) * 1000
                if is_sse:
                    usage.feed(chunk)
                yield chunk
        except httpx.HTTPError as exc:
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
            error = "client_cancelled"  # the client hung up mid-stream (ProxyASGIHandler)
            raise
        finally:
            await call.aclose()
            usage_buffer.record(
                UsageEntry(
                    deployment_id=route.id,
                    replica_id=call.replica.replica_id,
                    endpoint=endpoint,
                    status_code=upstream.status_code,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    first_byte_ms=first_byte_ms,
                    prompt_tokens=usage.prompt,
                    completion_tokens=usage.completion or usage.pieces,
                    streamed=True,
                    error=error,
                )
            )

    response = StreamingHttpResponse(
        relay(), status=upstream.status_code, headers=_headers_of(call)
    )
    response["X-Accel-Buffering"] = "no"
    return response


# --- what the schema says (the views read their bodies themselves) -----------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ERRORS = {
    400: "The body is not valid JSON or a field is invalid (`param` names it).",
    401: "No valid deployment key.",
    404: "The key's deployment does not serve this model or endpoint.",
    413: "The body is over PROXY_MAX_BODY_BYTES.",
    429: "The deployment's per-minute limit is reached; retry after `Retry-After`.",
    502: "The model server answered with an error.",
    503: "No replica of the deployment is ready.",
    504: "The model server did not answer in time.",
}
_AUDIO_UPLOAD = {
    "type": "object",
    "required": ["file", "model"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "model": {"type": "string"},
    },
    "additionalProperties": True,
}


def documented(body: type[BaseModel] | dict[str, Any] | None, *codes: int) -> dict[str, Any]:
    """`openapi_extra` for an endpoint: its request body (JSON from a schema, or a multipart
    form) and its error answers in OpenAI's shape."""
    extra: dict[str, Any] = {
        "responses": {
            str(code): {
                "description": _ERRORS[code],
                "content": {"application/json": {"schema": _ERROR_SCHEMA}},
            }
            for code in codes or _ERRORS
        }
    }
    if isinstance(body, dict):
        content = {"multipart/form-data": {"schema": body}}
    elif body is not None:
        content = {"application/json": {"schema": body.model_json_schema()}}
    if body is not None:
        extra["requestBody"] = {"required": True, "content": content}
    return extra


# --- endpoints ----------------------------------------------------------------------------------


async def _forward_json(
    request: HttpRequest,
    *,
    schema: Any,
    capability: str,
    endpoint: str,
    stream: bool | None = None,
) -> HttpResponse | StreamingHttpResponse:
    """Validate a JSON body against `schema`, authorize its model for `capability` and relay
    it. `stream` None: as the body's own `stream` field asks."""
    raw = request.read()
    body: Any = parse_json(raw, schema)
    route = await authorize(request, capability=capability, model=body.model)
    response = await forward(
        request,
        route=route,
        endpoint=endpoint,
        raw=raw,
        content_type="application/json",
        stream=bool(body.stream) if stream is None else stream,
    )
    return admission.finish(request, response, endpoint=endpoint)


@v1.post("/chat/completions", openapi_extra=documented(schemas.ChatCompletionIn))
async def chat_completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _forward_json(
        request, schema=schemas.ChatCompletionIn, capability="chat", endpoint="chat/completions"
    )


@v1.post("/completions", openapi_extra=documented(schemas.CompletionIn))
async def completions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _forward_json(
        request, schema=schemas.CompletionIn, capability="completions", endpoint="completions"
    )


@v1.post("/embeddings", openapi_extra=documented(schemas.EmbeddingsIn))
async def embeddings(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _forward_json(
        request,
        schema=schemas.EmbeddingsIn,
        capability="embeddings",
        endpoint="embeddings",
        stream=False,
    )


@v1.post("/audio/speech", openapi_extra=documented(schemas.SpeechIn))
async def audio_speech(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _forward_json(
        request,
        schema=schemas.SpeechIn,
        capability="speech",
        endpoint="audio/speech",
        stream=True,  # audio is relayed as the server produces it
    )


@v1.post("/audio/transcriptions", openapi_extra=documented(_AUDIO_UPLOAD))
async def audio_transcriptions(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    content_type = request.headers.get("Content-Type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequestError("Send the audio as multipart/form-data.", param="file")
    raw = request.read()
    meta = {**request.META, "CONTENT_LENGTH": str(len(raw))}
    try:
        fields, files = MultiPartParser(meta, BytesIO(raw), request.upload_handlers).parse()
    except MultiPartParserError as exc:
        raise InvalidRequestError(f"Malformed multipart body: {exc}", param="file") from exc
    model = fields.get("model")
    if not model:
        raise InvalidRequestError("model: Field required", param="model")
    if "file" not in files:
        raise InvalidRequestError("file: Field required", param="file")
    route = await authorize(request, capability="transcription", model=model)
    response = await forward(
        request,
        route=route,
        endpoint="audio/transcriptions",
        raw=raw,
        content_type=content_type,
        stream=False,
    )
    return admission.finish(request, response, endpoint="audio/transcriptions")


@v1.post("/images/generations", openapi_extra=documented(schemas.ImageGenerationIn))
async def images_generations(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    return await _forward_json(
        request,
        schema=schemas.ImageGenerationIn,
        capability="images",
        endpoint="images/generations",
        stream=False,
    )


def _model_out(route: DeploymentRoute) -> dict[str, Any]:
    return {"id": route.model_name, "object": "model", "created": route.created, "owned_by": "you"}


@v1.get("/models", response=schemas.ModelListOut, openapi_extra=documented(None, 401, 404))
async def models(request: HttpRequest) -> dict[str, Any]:
    identity = await router.authenticate(credential(request))
    route = await router.deployment_route(identity)
    return {"object": "list", "data": [_model_out(route)]}


@v1.get("/models/{model}", response=schemas.ModelOut, openapi_extra=documented(None, 401, 404))
async def model_detail(request: HttpRequest, model: str) -> dict[str, Any]:
    identity = await router.authenticate(credential(request))
    route = await router.deployment_route(identity)
    if model != route.model_name:
        raise ModelNotFoundError(f"The model '{model}' does not exist.", param="model")
    return _model_out(route)


api.add_router("/", v1)
