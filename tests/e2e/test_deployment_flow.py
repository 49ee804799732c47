"""Deploy a model, a REAL agent runs its replica as a Docker container (host network, the
local backends image with the host's venv mounted), the health check makes it READY, and the
official `openai` SDK gets an answer through our /v1 proxy."""

import os
import sys
from pathlib import Path

import openai
import pytest
from rest_framework.test import APIClient

from apps.catalog.models import Deployment, DeploymentStatus
from apps.catalog.services import health, provisioning
from apps.catalog.services.templates import templates_seed
from apps.pods.models import Pod, PodStatus
from apps.proxy.routing import router
from tests.factories import fund
from tests.support import ROOT, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

MODELS_VENV = Path(os.environ.get("MODELS_VENV") or ROOT / ".venv-models")


def models_venv_or_skip() -> Path:
    if not (MODELS_VENV / "bin" / "python").exists():
        pytest.skip(
            f"the CPU model backends are not installed ({MODELS_VENV} missing): `make models` "
            "builds them (~5 min), or set MODELS_VENV"
        )
    return MODELS_VENV


def deploy_and_wait_ready(user, slug: str, settings, timeout: float = 120) -> tuple[str, str]:
    port = free_port()
    settings.CATALOG_HOST_PORT_RANGE = (port, port)
    templates_seed()
    fund(user, 100_000_000)
    api = APIClient()
    api.force_authenticate(user)
    response = api.post(f"/api/v1/models/{slug}/deploy", {}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()

    def ready() -> bool:
        # What beat runs every 15-30 s, run as often as the test polls.
        provisioning.deployments_sync_status()
        health.replicas_health_check()
        return Deployment.objects.get(pk=body["id"]).status == DeploymentStatus.READY

    wait_for(ready, f"{slug} READY", timeout=timeout)
    return body["id"], body["api_key"]


def test_deploy_echo_model_and_call_it_with_the_openai_sdk(
    proxy_server, local_agent, cleanup_containers, user, settings
):
    local_agent(Path(sys.prefix))  # the test backend needs only the core venv
    deployment_id, key = deploy_and_wait_ready(user, "local-echo-test", settings)
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=key, max_retries=0)

    reply = client.chat.completions.create(
        model="local-echo-test", messages=[{"role": "user", "content": "hello from a container"}]
    )
    streamed = client.chat.completions.create(
        model="local-echo-test",
        messages=[{"role": "user", "content": "and streamed"}],
        stream=True,
    )

    assert reply.choices[0].message.content == "echo: hello from a container"
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == "echo: and streamed"

    api = APIClient()
    api.force_authenticate(user)
    assert api.delete(f"/api/v1/models/deployments/{deployment_id}").status_code == 200
    pod = Pod.objects.get(replica__deployment_id=deployment_id)
    wait_for(
        lambda: Pod.objects.get(pk=pod.pk).status == PodStatus.STOPPED, "the replica's pod stopped"
    )
    router.invalidate()  # the proxy trusts what it read for PROXY_ROUTE_CACHE_S (2 s)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


@pytest.mark.models
def test_local_smollm2_deployment_answers_for_real(
    proxy_server, local_agent, cleanup_containers, user, settings
):
    local_agent(models_venv_or_skip())
    _, key = deploy_and_wait_ready(user, "local-smollm2-135m", settings, timeout=180)
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=key, max_retries=0)

    reply = client.chat.completions.create(
        model="local-smollm2-135m",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )

    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.completion_tokens > 0
