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

import logging
from io import BytesIO
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from ninja import NinjaAPI, Router
from pydantic import BaseModel

from apps.core.apidocs import LocalSwagger
from apps.proxy import schemas
from apps.proxy.admission import admit
from apps.proxy.forward import SECURITY_HEADERS, Proxied, forward, usage_in
from apps.proxy.routing import (
    DeploymentRoute,
    InvalidRequestError,
    ModelNotFoundError,
    ProxyError,
    router,
)
from apps.proxy.schemas import parse_json

logger = logging.getLogger(__name__)

api = NinjaAPI(
    title="OpenAI-compatible API",
    version="1",
    urls_namespace="openai",
    description="Point the official `openai` SDK at `/v1` with a deployment key (`sk_…`).",
    docs=LocalSwagger(),
)
v1 = Router(tags=["openai"])

__all__ = ["api", "parse_json", "usage_in"]  # where callers knew them


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


def django_response(proxied: Proxied) -> HttpResponse | StreamingHttpResponse:
    if proxied.chunks is None:
        return HttpResponse(proxied.body, status=proxied.status, headers=proxied.headers)
    return StreamingHttpResponse(proxied.chunks, status=proxied.status, headers=proxied.headers)


async def relay(
    request: HttpRequest,
    *,
    capability: str,
    model: str | None,
    endpoint: str,
    raw: bytes,
    content_type: str,
    stream: bool,
) -> HttpResponse | StreamingHttpResponse:
    """Authorize the request's key for `model` and `capability`, and forward it."""
    identity = await router.authenticate(credential(request))
    route, admission = await admit(identity, capability=capability, model=model)
    proxied = await forward(
        admission,
        route,
        endpoint=endpoint,
        raw=raw,
        content_type=content_type,
        accept=request.headers.get("Accept", "*/*"),
        stream=stream,
    )
    return django_response(proxied)


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
    return await relay(
        request,
        capability=capability,
        model=body.model,
        endpoint=endpoint,
        raw=raw,
        content_type="application/json",
        stream=bool(body.stream) if stream is None else stream,
    )


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
    return await relay(
        request,
        capability="transcription",
        model=model,
        endpoint="audio/transcriptions",
        raw=raw,
        content_type=content_type,
        stream=False,
    )


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
