"""One error body for every API error:

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {...}}}

`message` is a sentence a person can act on; `fields` (validation errors only) maps each bad
field to what is wrong with it."""

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


def error_body(
    *, status_code: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, list):
        flat = [_flatten(d) for d in detail]
        return flat[0] if len(flat) == 1 else flat
    if isinstance(detail, dict):
        return {k: _flatten(v) for k, v in detail.items()}
    return str(detail)


def _summary(fields: dict[str, Any]) -> str:
    parts = []
    for name, problem in fields.items():
        text = problem if isinstance(problem, str) else _summary_value(problem)
        parts.append(text if name == "non_field_errors" else f"{name}: {text}")
    return "; ".join(parts)


def _summary_value(problem: Any) -> str:
    if isinstance(problem, dict):
        return "{" + _summary(problem) + "}"
    if isinstance(problem, list):
        return ", ".join(_summary_value(p) for p in problem)
    return str(problem)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler answers in the same shape
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        response.data = error_body(
            status_code=response.status_code,
            code="invalid",
            message=_summary(fields),
            fields=fields,
        )
    else:
        detail = getattr(exc, "detail", str(exc))
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = error_body(
            status_code=response.status_code, code=str(code), message=str(_flatten(detail))
        )
    return response


def json_error(*, status_code: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(
        error_body(status_code=status_code, code=code, message=message), status=status_code
    )


def handler404(request: Any, exception: Exception | None = None) -> Any:
    if request.path.startswith(("/api/", "/v1/")):
        return json_error(status_code=404, code="not_found", message="No such resource.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request: Any) -> Any:
    if request.path.startswith(("/api/", "/v1/")):
        return json_error(
            status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
            code="server_error",
            message="Internal error; it has been logged.",
        )
    from django.views.defaults import server_error

    return server_error(request)
