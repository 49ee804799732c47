"""Edge protection that runs before any view: security headers, a request-size cap and rate
limits. Input validation itself is the serializers' job; nothing here pattern-matches payloads
(prompts legitimately contain `DROP TABLE` and `<script>`)."""

import hashlib
from collections.abc import Callable
from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache import cache as django_cache
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from apps.core.errors import json_error
from apps.core.ratelimit import Verdict, client_bucket, rate_limit_hit

STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; media-src 'self' blob:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI sets inline style attributes; its scripts still come only from us.
DOCS_CSP = STRICT_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
PERMISSIONS_POLICY = "camera=(), geolocation=(), payment=(), usb=(), microphone=(self)"

Handler = Callable[[HttpRequest], Any]


class HookMiddleware:
    """`before` may answer early; `after` decorates the response. Sync only: under ASGI the
    whole chain runs in one thread hop (see SyncBoundaryMiddleware)."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        early = self.before(request)
        response = early if early is not None else self.get_response(request)
        return self.after(request, response)

    def before(self, request: HttpRequest) -> HttpResponse | None:
        return None

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        return response


class SecurityHeadersMiddleware(HookMiddleware):
    """CSP, Permissions-Policy and friends on every response, HTML and JSON alike.
    (Django's SecurityMiddleware adds nosniff, Referrer-Policy, COOP and HSTS in production;
    XFrameOptionsMiddleware adds X-Frame-Options: DENY.)"""

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        csp = DOCS_CSP if request.path.startswith("/api/docs") else STRICT_CSP
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


class RequestBodyLimitMiddleware(HookMiddleware):
    """Refuses a body larger than MAX_REQUEST_BODY_BYTES before anything reads it (413).
    Bodies without Content-Length are capped by DATA_UPLOAD_MAX_MEMORY_SIZE when read."""

    def before(self, request: HttpRequest) -> HttpResponse | None:
        length = request.META.get("CONTENT_LENGTH") or "0"
        limit = settings.MAX_REQUEST_BODY_BYTES
        if not length.isdigit():
            return json_error(
                status_code=400, code="bad_content_length", message="Invalid Content-Length."
            )
        if int(length) > limit:
            return json_error(
                status_code=413,
                code="body_too_large",
                message=f"Request body is {int(length)} bytes; the limit is {limit} bytes.",
            )
        return None


def client_ip(request: HttpRequest) -> str:
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= trusted:
            return hops[-trusted]
    return str(request.META.get("REMOTE_ADDR") or "unknown")


CREDENTIAL_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "HTTP_X_AGENT_API_KEY")


@cache
def _identity_resolvers(paths: tuple[str, ...]) -> tuple[Callable[[HttpRequest], Any], ...]:
    return tuple(import_string(path) for path in paths)


def verified_identity(request: HttpRequest) -> str | None:
    """Who the request's credential belongs to ("apikey:<id>", "user:<id>", "node:<id>"), when
    it carries one that verifies; None otherwise. Each RATE_LIMIT_IDENTITY_RESOLVERS entry
    checks the credentials of its app (a digest lookup, a JWT signature). A verified answer is
    cached for RATE_LIMIT_IDENTITY_CACHE_S under a hash of the credential headers, so a steady
    client costs one cache read; a made-up credential is looked up every time (it never
    verifies) and counted against the IP."""
    material = "\n".join(str(request.META.get(name, "")) for name in CREDENTIAL_HEADERS)
    if not material.strip():
        return None
    cache_key = "rlid:" + hashlib.sha256(material.encode()).hexdigest()[:40]
    identity = django_cache.get(cache_key)
    if identity:
        return str(identity)
    for resolve in _identity_resolvers(tuple(settings.RATE_LIMIT_IDENTITY_RESOLVERS)):
        identity = resolve(request)
        if identity:
            django_cache.set(cache_key, identity, settings.RATE_LIMIT_IDENTITY_CACHE_S)
            return str(identity)
    return None


class RateLimitMiddleware(HookMiddleware):
    """RATE_LIMITS (default 60/m and 1000/h) per verified API credential, or per client IP for
    requests without one. A credential only chooses the bucket once it verifies (see
    `verified_identity`): a made-up `Authorization` or `X-API-Key` counts against the IP like
    no credential at all, so it cannot buy a fresh bucket. Health checks and static files are
    exempt. Every counted response carries X-RateLimit-Limit/Remaining/Reset (Reset in epoch
    seconds); a refused one is a 429 with Retry-After."""

    def _exempt(self, request: HttpRequest) -> bool:
        return not settings.RATE_LIMIT_ENABLED or request.path.startswith(
            tuple(settings.RATE_LIMIT_EXEMPT_PATHS)
        )

    def _bucket(self, request: HttpRequest) -> str:
        return client_bucket(identity=verified_identity(request), ip=client_ip(request))

    def before(self, request: HttpRequest) -> HttpResponse | None:
        if self._exempt(request):
            return None
        return self._judge(request, rate_limit_hit(self._bucket(request)))

    def _judge(self, request: HttpRequest, verdict: Verdict) -> HttpResponse | None:
        request._rate_limit_verdict = verdict  # type: ignore[attr-defined]
        if verdict.allowed:
            return None
        response = json_error(
            status_code=429,
            code="rate_limited",
            message=f"Too many requests; retry in {verdict.retry_after} s.",
        )
        response["Retry-After"] = str(verdict.retry_after)
        return response

    def after(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        verdict: Verdict | None = getattr(request, "_rate_limit_verdict", None)
        if verdict is not None:
            response["X-RateLimit-Limit"] = str(verdict.limit)
            response["X-RateLimit-Remaining"] = str(verdict.remaining)
            response["X-RateLimit-Reset"] = str(verdict.reset_at)
        return response


class SyncBoundaryMiddleware:
    """Last in MIDDLEWARE, sync-only on purpose. Under ASGI, Django runs each async-capable
    MiddlewareMixin's hooks through `sync_to_async`: two thread hops per middleware per request.
    A sync-only innermost middleware makes Django run the whole chain in one thread hop
    (measured in-process on a heartbeat: 19.4 ms → 13.8 ms median)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
