"""A deployment's scaling settings change at any time: the API's PATCH (4xx naming the field,
nothing changed), the deployment page's form, and the admin — each through one service that
records the change as an event and brings the replica count within the new bounds."""

import pytest
from django.test import Client, TestCase

from apps.catalog.models import Deployment, DeploymentStatus, ModelTemplate, Replica, ReplicaStatus
from apps.catalog.services.deploy import deployment_create
from tests.factories import fund

pytestmark = pytest.mark.django_db


def deploy_echo(owner_client, **extra):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = owner_client.post("/api/v1/models/local-echo-test/deploy", extra, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_patch_changes_scaling_and_records_an_event(owner_client, catalog, cpu_node):
    body = deploy_echo(owner_client)
    assert (body["min_replicas"], body["max_replicas"], body["replicas"]) == (1, 1, 1)

    response = owner_client.patch(
        f"/api/v1/models/deployments/{body['id']}",
        {"min_replicas": 0, "max_replicas": 3, "target_concurrency": 4, "queue_timeout_s": 20},
        format="json",
    )

    assert response.status_code == 200, response.json()
    out = response.json()
    assert (out["min_replicas"], out["max_replicas"], out["target_concurrency"]) == (0, 3, 4)
    assert out["queue_timeout_s"] == 20 and out["replicas"] == 1  # within the bounds: kept
    reasons = [e["reason"] for e in owner_client.get(f"{_url(body)}/events").json()]
    assert any("min_replicas 1→0" in r and "max_replicas 1→3" in r for r in reasons)


def _url(body):
    return f"/api/v1/models/deployments/{body['id']}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"min_replicas": -1}, "min_replicas"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"max_replicas": 17}, "max_replicas"),
        ({"min_replicas": 4, "max_replicas": 2}, "min_replicas"),
        ({"target_concurrency": 0}, "target_concurrency"),
        ({"queue_timeout_s": "soon"}, "queue_timeout_s"),
        ({"max_queue": 10_001}, "max_queue"),
        ({"replicas": 5}, "replicas"),
    ],
)
def test_bad_patch_names_the_field_and_changes_nothing(
    owner_client, catalog, cpu_node, change, field
):
    body = deploy_echo(owner_client)
    before = Deployment.objects.values().get(pk=body["id"])

    response = owner_client.patch(_url(body), change, format="json")

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"], response.json()
    assert Deployment.objects.values().get(pk=body["id"]) == before


def test_min_above_current_max_is_refused(owner_client, catalog, cpu_node):
    body = deploy_echo(owner_client)

    response = owner_client.patch(_url(body), {"min_replicas": 2}, format="json")

    assert response.status_code == 400
    assert "min_replicas" in response.json()["error"]["fields"]


def test_other_tenant_and_anonymous_cannot_patch(
    owner_client, other_client, api_client, catalog, cpu_node
):
    body = deploy_echo(owner_client)

    assert other_client.patch(_url(body), {"max_replicas": 2}, format="json").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.patch(_url(body), {"max_replicas": 2}, format="json").status_code == 401
    assert Deployment.objects.get(pk=body["id"]).max_replicas == 1


def test_raising_min_replicas_provisions_at_once(owner_client, catalog, cpu_node, settings):
    settings.CATALOG_HOST_PORT_RANGE = (29100, 29110)
    body = deploy_echo(owner_client)

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = owner_client.patch(
            _url(body), {"max_replicas": 3, "min_replicas": 2}, format="json"
        )

    assert response.status_code == 200 and response.json()["replicas"] == 2
    assert Replica.objects.filter(deployment_id=body["id"]).count() == 2


def test_lowering_max_replicas_drains_the_extra_one(owner_client, catalog, cpu_node, settings):
    settings.CATALOG_HOST_PORT_RANGE = (29100, 29110)
    body = deploy_echo(owner_client, replicas=2)

    response = owner_client.patch(_url(body), {"min_replicas": 1, "max_replicas": 1}, format="json")

    assert response.status_code == 200 and response.json()["replicas"] == 1
    statuses = sorted(
        Replica.objects.filter(deployment_id=body["id"]).values_list("status", flat=True)
    )
    assert statuses.count(ReplicaStatus.DRAINING) == 1


def test_deploy_accepts_scaling_and_starts_at_zero(owner_client, catalog, cpu_node):
    body = deploy_echo(owner_client, min_replicas=0, max_replicas=2, replicas=1)
    assert body["min_replicas"] == 0 and body["replicas"] == 1
    idle = deploy_echo(owner_client, min_replicas=0, max_replicas=2)
    assert idle["replicas"] == 0 and idle["status"] == "IDLE" and idle["replica_set"] == []
    only_min = owner_client.post(
        "/api/v1/models/local-echo-test/deploy", {"min_replicas": 0}, format="json"
    )
    assert only_min.status_code == 400 and "max_replicas" in only_min.json()["error"]["fields"]

    bad = owner_client.post(
        "/api/v1/models/local-echo-test/deploy",
        {"min_replicas": 3, "max_replicas": 2},
        format="json",
    )
    assert bad.status_code == 400 and "min_replicas" in bad.json()["error"]["fields"]


def test_portal_form_saves_and_shows_errors(client: Client, user, catalog, cpu_node):
    fund(user, 100_000_000)
    template = ModelTemplate.objects.get(slug="local-echo-test")
    deployment = deployment_create(owner=user, template=template, name="echo").deployment
    client.force_login(user)
    url = f"/models/deployments/{deployment.pk}/scaling"
    good = {
        "min_replicas": 0,
        "max_replicas": 2,
        "target_concurrency": 3,
        "scale_down_delay_s": 30,
        "max_queue": 10,
        "queue_timeout_s": 15,
    }

    saved = client.post(url, good)
    refused = client.post(url, {**good, "min_replicas": 3})

    assert saved.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.min_replicas, deployment.max_replicas, deployment.max_queue) == (0, 2, 10)
    assert refused.status_code == 400
    assert b'data-testid="scaling-error-min_replicas"' in refused.content
    page = client.get(f"/models/deployments/{deployment.pk}/")
    assert b'data-testid="scaling-form"' in page.content and b"Cold starts" in page.content


def test_admin_edits_scaling_only_through_the_service(user, catalog, cpu_node, django_user_model):
    fund(user, 100_000_000)
    template = ModelTemplate.objects.get(slug="local-echo-test")
    deployment = deployment_create(owner=user, template=template, name="echo").deployment
    operator = django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    client = Client()
    client.force_login(operator)
    url = f"/admin/catalog/deployment/{deployment.pk}/change/"
    form = {
        "min_replicas": 0,
        "max_replicas": 4,
        "target_concurrency": 2,
        "scale_down_delay_s": 60,
        "max_queue": 5,
        "queue_timeout_s": 30,
        "status": "STOPPED",  # read-only: ignored
    }
    for prefix in ("replica_set", "events"):
        form.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})

    bad = client.post(url, {**form, "min_replicas": 5})
    good = client.post(url, form)

    assert bad.status_code == 200 and b"must not exceed max_replicas" in bad.content
    assert good.status_code == 302, good.content[:2000]
    deployment.refresh_from_db()
    assert (deployment.min_replicas, deployment.max_replicas, deployment.max_queue) == (0, 4, 5)
    assert deployment.status != DeploymentStatus.STOPPED
    assert deployment.events.filter(reason__contains="operator ops@example.com").exists()
