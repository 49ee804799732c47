"""The errors of everything that routes to deployments: each carries its HTTP status, OpenAI's
error `type` and `code`, and for a 429 the seconds to wait. The `/v1` views render them as
OpenAI error bodies, the voice consumers as close codes."""

from __future__ import annotations

from typing import Any


class ProxyError(Exception):
    """A request the proxy refuses; rendered as OpenAI's `{"error": {message, type, code}}`."""

    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ProxyError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidKeyError(ProxyError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ModelNotFoundError(ProxyError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RateLimitedError(ProxyError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class NoReadyReplicaError(ProxyError):
    status = 503
    type = "server_error"
    code = "no_ready_replica"


class UpstreamError(ProxyError):
    status = 502
    type = "server_error"
    code = "upstream_error"
