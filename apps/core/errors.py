"""One error body for every API error:

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {...}}}

`message` is a sentence a person can act on; `fields` (validation errors only) maps each bad
field to what is wrong with it."""

from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


def error_body(
    *, status_code: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _field_errors(detail: Any, path: str = "") -> dict[str, str]:
    """DRF's nested error detail as {"gpus[0].utilization_pct": "A valid number is required."}."""
    if isinstance(detail, dict):
        out: dict[str, str] = {}
        for key, value in detail.items():
            if isinstance(key, int):  # nested list serializers key their errors by index
                name = f"{path}[{key}]"
            else:
                name = f"{path}.{key}" if path else str(key)
            out.update(_field_errors(value, name))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {path or "non_field_errors": " ".join(str(item) for item in detail)}
        out = {}
        for index, item in enumerate(detail):
            if item:
                out.update(_field_errors(item, f"{path}[{index}]"))
        return out
    return {path or "non_field_errors": str(detail)}


def _summary(fields: dict[str, str]) -> str:
    return "; ".join(
        problem if name == "non_field_errors" else f"{name}: {problem}"
        for name, problem in fields.items()
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler answers in the same shape
    if isinstance(exc, exceptions.ValidationError):
        fields = _field_errors(exc.detail)
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
            status_code=response.status_code, code=str(code), message=str(detail)
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
