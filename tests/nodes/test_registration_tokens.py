"""Registration tokens: the bootstrap token and sourcing instance tokens (`sit_…`) are single-use
(by default) and expire; `pk_…` keys stay reusable, and every registration through one shows in
the provider's node list; refused credentials are logged with node, reason and source."""

import logging
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.secrets import secret_digest
from apps.nodes.models import Node, NodeRegistration, RegistrationTokenUse
from apps.providers.services.keys import provider_key_create
from apps.providers.services.providers import provider_register
from apps.sourcing.models import InstanceStatus, ProvisionedInstance
from tests.factories import BOOTSTRAP, CRYPTO, h100_registration

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _real_limits(settings):
    settings.NODE_REGISTRATION_TOKEN_MAX_USES = 1
    settings.NODE_REGISTRATION_TOKEN_TTL_S = 3600


def register(api_client, token, *, gpu_uuid=None, **extra):
    body = h100_registration(registration_token=token, **extra)
    if gpu_uuid:
        body["gpus"] = [{**body["gpus"][0], "uuid": gpu_uuid}]
    return api_client.post(
        "/api/v1/nodes/register", body, format="json", REMOTE_ADDR="198.51.100.7"
    )


def test_a_bootstrap_token_registers_one_node_and_says_so_on_the_second(api_client, caplog):
    first = register(api_client, BOOTSTRAP)
    with caplog.at_level(logging.WARNING, logger="apps.nodes.refusals"):
        second = register(api_client, BOOTSTRAP, gpu_uuid=f"GPU-{uuid.uuid4()}", hostname="b")

    assert first.status_code == 201
    assert second.status_code == 401
    assert "already registered 1 node(s), its limit" in second.json()["error"]["message"]
    assert Node.objects.count() == 1
    [line] = [r for r in caplog.records if r.name == "apps.nodes.refusals"]
    assert "already registered" in line.getMessage()
    assert "source=198.51.100.7" in line.getMessage() and "node=unknown" in line.getMessage()
    assert BOOTSTRAP not in line.getMessage()  # only the token's first characters


def test_a_bootstrap_token_expires_an_hour_after_its_first_use(api_client, settings):
    settings.NODE_REGISTRATION_TOKEN_MAX_USES = 5
    assert register(api_client, BOOTSTRAP).status_code == 201
    RegistrationTokenUse.objects.filter(digest=secret_digest(BOOTSTRAP)).update(
        first_used_at=timezone.now() - timedelta(seconds=3601)
    )

    late = register(api_client, BOOTSTRAP, gpu_uuid=f"GPU-{uuid.uuid4()}", hostname="late")

    assert late.status_code == 401
    message = late.json()["error"]["message"]
    assert "expired" in message and "first used" in message


def _instance(raw: str, *, created_ago: timedelta = timedelta(0)) -> ProvisionedInstance:
    instance = ProvisionedInstance.objects.create(
        label=f"inst-{uuid.uuid4().hex[:8]}",
        provider="sim",
        provider_instance_id=f"i-{uuid.uuid4().hex[:8]}",
        gpu_model="H100 SXM",
        status=InstanceStatus.WAITING_REGISTRATION,
        token_prefix=raw[:8],
        token_digest=secret_digest(raw),
    )
    ProvisionedInstance.objects.filter(pk=instance.pk).update(
        created_at=timezone.now() - created_ago
    )
    return instance


def test_an_instance_token_is_single_use(api_client):
    raw = f"sit_{uuid.uuid4().hex}"
    _instance(raw)

    first = register(api_client, raw)
    again = register(api_client, raw)

    assert first.status_code == 201
    assert again.status_code == 401 and "instance token" in again.json()["error"]["message"]


def test_an_instance_token_expires_an_hour_after_the_instance_was_created(api_client):
    raw = f"sit_{uuid.uuid4().hex}"
    _instance(raw, created_ago=timedelta(hours=2))

    response = register(api_client, raw)

    assert response.status_code == 401
    message = response.json()["error"]["message"]
    assert "expired" in message and "issued" in message


def test_provider_keys_stay_reusable_and_every_registration_shows_to_the_provider(
    api_client, django_user_model, settings
):
    owner = django_user_model.objects.create_user(email="farm@example.com", password="x" * 12)
    provider = provider_register(
        owner=owner,
        display_name="farm",
        payout_method="CRYPTO",
        payout_details=dict(CRYPTO),
    ).provider
    key = provider_key_create(provider=provider, name="rack 1").raw

    hosts = [
        register(api_client, key, gpu_uuid=f"GPU-{uuid.uuid4()}", hostname=f"h{i}")
        for i in range(3)
    ]

    assert [r.status_code for r in hosts] == [201, 201, 201]
    assert NodeRegistration.objects.filter(credential="provider_key").count() == 3
    api_client.force_authenticate(owner)
    listed = api_client.get("/api/v1/providers/nodes").json()
    assert len(listed) == 3
    for node in listed:
        [reg] = node["registrations"]
        assert reg["credential"] == "provider_key" and reg["source_ip"] == "198.51.100.7"
        assert key.startswith(reg["credential_prefix"]) and len(reg["credential_prefix"]) <= 8


def test_an_unknown_registration_token_is_logged(api_client, caplog):
    with caplog.at_level(logging.WARNING, logger="apps.nodes.refusals"):
        response = register(api_client, "pk_not-a-real-key-at-all")
    assert response.status_code == 401
    [line] = [r.getMessage() for r in caplog.records if r.name == "apps.nodes.refusals"]
    assert "invalid registration token" in line and "source=198.51.100.7" in line
