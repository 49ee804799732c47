"""Property-based fuzzing of both OpenAPI schemas with schemathesis: `/api/v1` (DRF) and `/v1`
(ninja), against the real ASGI app under uvicorn on a free local port, with a user's API key
and a deployment key whose replica is the echo test backend. Every generated request must get a
non-5xx answer that matches what the schema documents for its status; both valid requests and
requests that break the schema (which must be refused with a 4xx) are generated. Bounded: a few
examples per operation (SCHEMATHESIS_EXAMPLES, default 10), so the pass stays within CI's budget
(about 70 s for both schemas on a loaded 2-core machine)."""

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.factories import make_deployment
from tests.fakes.stripe_server import running_stripe

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def edge(proxy_server, echo_backends, user, settings, django_user_model):
    """The server, a personal API key and a deployment key, with the outside world faked."""
    from apps.accounts.services import api_key_create

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.POD_LOGS_WAIT_S = 0.1
    with running_stripe() as stripe:
        settings.STRIPE_SECRET_KEY = stripe.api_key
        settings.STRIPE_WEBHOOK_SECRET = "whsec_test_schemathesis_0123456789"
        settings.STRIPE_API_BASE = stripe.base_url
        settings.STRIPE_MAX_NETWORK_RETRIES = 0
        api_key = api_key_create(user=user, name="fuzz").raw_key
        _, deployment_key = make_deployment(user, backends=[echo_backends()])
        yield proxy_server, api_key, deployment_key


def fuzz(schema_doc: dict[str, Any], base_url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation of the schema; the failures, one line each."""
    schema = schemathesis.openapi.from_dict(schema_doc)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        # Valid requests and invalid ones (which must be refused with a 4xx, not a 5xx).
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected, reported together below
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}"[:2000])
    return failures


@pytest.mark.django_db(transaction=True)
def test_api_v1_schema_holds_under_fuzzing(edge):
    import httpx

    server, api_key, _ = edge
    doc = httpx.get(server.url + "/api/schema/?format=json", timeout=30).json()

    failures = fuzz(doc, server.url, {"Authorization": f"Bearer {api_key}"})

    assert not failures, "\n\n".join(failures)


@pytest.mark.django_db(transaction=True)
def test_openai_v1_schema_holds_under_fuzzing(edge):
    import httpx

    server, _, deployment_key = edge
    doc = httpx.get(server.url + "/v1/openapi.json", timeout=30).json()

    failures = fuzz(doc, server.url, {"Authorization": f"Bearer {deployment_key}"})

    assert not failures, "\n\n".join(failures)
