"""The OpenAPI schemas say what the APIs do: error answers, pagination, decimal strings and
`/v1` request bodies."""

import re

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def drf_schema(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def v1_schema(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_every_operation_documents_its_error_answers(drf_schema):
    for path, item in drf_schema["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            expected = {"400", "401", "403", "404", "429"}
            if method in ("post", "put", "patch", "delete"):
                expected |= {"402", "409"}
            assert expected <= codes, (method, path, codes)
            error = operation["responses"]["404"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorOutput"}


@pytest.mark.parametrize("path", ["/api/v1/users/usage", "/api/v1/dashboard/gpu-offers"])
def test_paginated_lists_are_documented_as_pages(drf_schema, path):
    operation = drf_schema["paths"][path]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = drf_schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"count", "next", "previous", "results"} <= set(page["properties"])
    assert {"limit", "offset"} <= {p["name"] for p in operation.get("parameters", [])}


def test_decimal_patterns_need_digits(drf_schema):
    patterns = [
        prop["pattern"]
        for component in drf_schema["components"]["schemas"].values()
        for prop in component.get("properties", {}).values()
        if prop.get("format") == "decimal" and "pattern" in prop
    ]
    assert patterns
    for pattern in patterns:
        for bad in ("", "-", ".", "-."):
            assert not re.match(pattern, bad), (pattern, bad)
        assert re.match(pattern, "12.5") and re.match(pattern, "-0.25") and re.match(pattern, "3")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/audio/speech",
        "/v1/images/generations",
        "/v1/audio/transcriptions",
    ],
)
def test_v1_documents_request_bodies_and_errors(v1_schema, path):
    operation = v1_schema["paths"][path]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    ((media_type, content),) = body["content"].items()
    assert "model" in _resolve(v1_schema, content["schema"])["properties"]
    assert {"400", "401", "404", "413", "429", "503"} <= set(operation["responses"])


def _resolve(schema, node):
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node
