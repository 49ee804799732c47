"""What `/v1` checks of a request before forwarding it. Only the fields the proxy needs are
declared; everything else passes through to the model server untouched (extra="allow")."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apps.proxy.routing import InvalidRequestError


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatCompletionIn(_Open):
    model: str = Field(min_length=1, max_length=200)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool | None = False


class CompletionIn(_Open):
    model: str = Field(min_length=1, max_length=200)
    prompt: str | list[str] | list[int] | list[list[int]]
    stream: bool | None = False


class EmbeddingsIn(_Open):
    model: str = Field(min_length=1, max_length=200)
    input: str | list[str] | list[int] | list[list[int]]


class SpeechIn(_Open):
    model: str = Field(min_length=1, max_length=200)
    input: str = Field(min_length=1, max_length=4096)
    voice: str | dict[str, Any] = "alloy"


class ImageGenerationIn(_Open):
    model: str | None = Field(default=None, max_length=200)
    prompt: str = Field(min_length=1, max_length=32000)
    n: int | None = Field(default=1, ge=1, le=10)


class ModelOut(BaseModel):
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelListOut(BaseModel):
    object: str = "list"
    data: list[ModelOut]


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
