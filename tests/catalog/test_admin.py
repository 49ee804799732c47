"""The catalog in the admin: deployments view-only with replicas and events; the stop action
goes through deployment_stop; templates read-only."""

import pytest
from django.test import Client

from apps.catalog.models import Deployment, DeploymentStatus, ModelTemplate
from apps.catalog.services.deploy import deployment_create
from apps.pods.models import Pod, PodStatus
from tests.factories import fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(django_user_model):
    operator = django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    client = Client()
    client.force_login(operator)
    return client


def test_operator_stops_a_deployment_through_the_service(operator_client, user, catalog, cpu_node):
    fund(user, 100_000_000)
    template = ModelTemplate.objects.get(slug="local-echo-test")
    deployment = deployment_create(owner=user, template=template, name="echo").deployment
    listing = operator_client.get("/admin/catalog/deployment/")
    assert listing.status_code == 200 and "echo" in listing.content.decode()
    page = operator_client.get(f"/admin/catalog/deployment/{deployment.pk}/change/")
    assert page.status_code == 200 and "deployed" in page.content.decode()

    response = operator_client.post(
        "/admin/catalog/deployment/", {"action": "stop", "_selected_action": [deployment.pk]}
    )

    assert response.status_code == 302
    stopped = Deployment.objects.get(pk=deployment.pk)
    assert stopped.status == DeploymentStatus.STOPPED
    assert "stopped by operator ops@example.com" in stopped.status_reason
    assert all(
        p.status in (PodStatus.STOPPING, PodStatus.STOPPED)
        for p in Pod.objects.filter(replica__deployment=deployment)
    )
    # View-only: no form save changes a deployment.
    operator_client.post(f"/admin/catalog/deployment/{deployment.pk}/change/", {"status": "READY"})
    assert Deployment.objects.get(pk=deployment.pk).status == DeploymentStatus.STOPPED


def test_templates_are_listed_read_only(operator_client, catalog):
    assert operator_client.get("/admin/catalog/modeltemplate/").status_code == 200
    assert operator_client.get("/admin/catalog/modeltemplate/add/").status_code == 403
