"""OpenAPI generation for `/api/v1` (drf-spectacular), made to say what the API really does:

- Every operation documents the error answers it can give, in the one error shape
  (apps.core.errors): 400, 401, 403, 404 and 429 everywhere; 402 and 409 on writes; 413 and
  415 where a body is sent. Clients and fuzzers can then check error bodies too.
- A decimal sent as a string must have digits: drf-spectacular's pattern accepts "" and "-",
  which the serializer refuses."""

from typing import Any

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERRORS = {
    400: "The request is malformed or a field is invalid (`fields` names each one).",
    401: "No valid credentials.",
    402: "The wallet's balance does not cover this.",
    403: "Authenticated, but not allowed to do this.",
    404: "No such resource (or not yours).",
    409: "The request conflicts with the resource's current state.",
    413: "The request body is over the size limit.",
    415: "The body is not JSON.",
    429: "Too many requests; retry after `Retry-After` seconds.",
}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
WITH_BODY = ("POST", "PUT", "PATCH")


class ErrorDetailOutput(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    # The metaclass takes declared fields out of the class, so this does not shadow
    # Serializer.fields at run time; only the type checker sees the name clash.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.CharField(), required=False, help_text="Each bad field: what is wrong."
    )


class ErrorOutput(serializers.Serializer):
    error = ErrorDetailOutput()


def decimal_pattern(field: serializers.DecimalField) -> str:
    """At least one digit, at most the field's whole and decimal digits."""
    whole = max(1, field.max_whole_digits or 0)
    places = field.decimal_places or 0
    fraction = rf"(?:\.\d{{1,{places}}})?" if places else ""
    return rf"^-?\d{{1,{whole}}}{fraction}$"


class AutoSchema(openapi.AutoSchema):
    def _error_codes(self) -> list[int]:
        codes = [400, 401, 403, 404, 429]
        if self.method in WRITES:
            codes += [402, 409]
        if self.method in WITH_BODY:
            codes += [413, 415]
        return sorted(codes)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    OpenApiResponse(ErrorOutput, description=ERRORS[code]),
                    str(code),
                    direction=direction,
                )
        return responses

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> dict[str, Any]:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            schema = {**schema, "pattern": decimal_pattern(field)}
        return schema
