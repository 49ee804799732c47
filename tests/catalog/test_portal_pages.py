"""The catalog's portal pages through Django's test client: cards by category, deploying from
the dialog's form (key shown once, 402 without balance), the deployment page (polls while it
comes up, metrics charts from the usage log, snippet, playground), stop and rotate."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.catalog.models import (
    Deployment,
    DeploymentKey,
    DeploymentStatus,
    ModelCategory,
    ModelUsageLog,
)
from tests.factories import fund

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_catalog_groups_cards_by_category_for_everyone(client, catalog):
    page = client.get("/models/")
    assert page.status_code == 200
    keys = [g["key"] for g in page.context["groups"]]
    assert keys == [value for value in ModelCategory.values if value in keys]
    assert page.context["groups"][0]["label"] == "Language models"
    assert "Log in to deploy" in page.content.decode()
    llm = client.get("/models/?category=llm").context["groups"]
    assert [g["key"] for g in llm] == ["llm"]


def test_deploy_shows_the_key_once_and_the_page_polls(browser, user, catalog, cpu_node):
    fund(user, 100_000_000)
    html = browser.get("/models/").content.decode()
    assert 'data-dialog="dialog-local-echo-test"' in html
    response = browser.post(
        "/models/local-echo-test/deploy/", {"gpu_model": "CPU", "replicas": "1", "name": "echo"}
    )
    assert response.status_code == 201
    page = response.content.decode()
    raw = re.search(r'data-testid="deployment-key">(sk_[^<]+)<', page).group(1)
    deployment = Deployment.objects.get(owner=user)
    assert deployment.name == "echo" and deployment.replicas == 1
    assert DeploymentKey.objects.get(deployment=deployment).digest != raw
    assert f'api_key="{raw}"' in page  # the snippet, this once
    assert 'data-poll-url="/models/deployments/' in page and "<progress" in page

    again = browser.get(f"/models/deployments/{deployment.pk}/").content.decode()
    assert raw not in again and "sk_…your deployment key" in again
    fragment = browser.get(
        f"/models/deployments/{deployment.pk}/", headers={"X-Requested-With": "fetch"}
    ).content.decode()
    assert fragment.startswith('<div id="deployment-status"')

    Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.READY)
    ready = browser.get(
        f"/models/deployments/{deployment.pk}/", headers={"X-Requested-With": "fetch"}
    ).content.decode()
    assert "data-poll-url" not in ready and "READY" in ready
    dashboard = browser.get("/dashboard/").content.decode()
    assert f"/models/deployments/{deployment.pk}/" in dashboard


def test_deploy_bad_input_and_no_balance(browser, user, catalog, cpu_node):
    bad = browser.post("/models/local-echo-test/deploy/", {"gpu_model": "CPU", "replicas": "99"})
    assert bad.status_code == 400 and bad.context["form"].errors["replicas"]
    broke = browser.post("/models/local-echo-test/deploy/", {"gpu_model": "CPU", "replicas": "1"})
    assert broke.status_code == 402
    assert not Deployment.objects.filter(owner=user).exists()


def test_metrics_charts_stop_and_rotate(browser, user, catalog, cpu_node, other_user):
    fund(user, 100_000_000)
    browser.post("/models/local-echo-test/deploy/", {"gpu_model": "CPU", "replicas": "1"})
    deployment = Deployment.objects.get(owner=user)
    now = timezone.now()
    ModelUsageLog.objects.bulk_create(
        ModelUsageLog(
            deployment=deployment,
            at=now - timedelta(minutes=m),
            endpoint="chat/completions",
            status_code=200,
            latency_ms=40.0,
            completion_tokens=7,
        )
        for m in (1, 2, 30)
    )
    page = browser.get(f"/models/deployments/{deployment.pk}/")
    series = page.context["series"]
    assert sum(int(p["value"]) for p in series["requests"]) == 3
    assert sum(int(p["value"]) for p in series["tokens"]) == 21
    assert 'data-testid="metric-requests">3<' in page.content.decode()

    outsider = Client()
    outsider.force_login(other_user)
    assert outsider.get(f"/models/deployments/{deployment.pk}/").status_code == 404
    assert outsider.post(f"/models/deployments/{deployment.pk}/stop").status_code == 404

    rotated = browser.post(f"/models/deployments/{deployment.pk}/rotate-key")
    assert rotated.status_code == 200 and 'data-testid="deployment-key">sk_' in (
        rotated.content.decode()
    )
    assert DeploymentKey.objects.filter(deployment=deployment, revoked_at__isnull=True).count() == 1
    assert browser.post(f"/models/deployments/{deployment.pk}/stop").status_code == 302
    assert Deployment.objects.get(pk=deployment.pk).status == DeploymentStatus.STOPPED
    assert (
        "data-playground"
        not in browser.get(f"/models/deployments/{deployment.pk}/").content.decode()
    )


def test_a_resubmitted_deploy_form_deploys_once(browser, user, catalog, cpu_node):
    fund(user, 100_000_000)
    nonce = browser.get("/models/local-echo-test/deploy/").context["form"]["nonce"].initial
    body = {"gpu_model": "CPU", "replicas": "1", "nonce": nonce}
    first = browser.post("/models/local-echo-test/deploy/", body)
    again = browser.post("/models/local-echo-test/deploy/", body)

    deployment = Deployment.objects.get(owner=user)
    assert first.status_code == 201
    assert again.status_code == 302
    assert again["Location"] == f"/models/deployments/{deployment.pk}/"
    fresh = browser.get("/models/local-echo-test/deploy/").context["form"]["nonce"].initial
    assert fresh != nonce
    browser.post("/models/local-echo-test/deploy/", {**body, "nonce": fresh})
    assert Deployment.objects.filter(owner=user).count() == 2
