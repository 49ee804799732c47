"""Economics of a deployment over a window: GPU cost per 1M input and output tokens and the idle
share, equal — exactly — to what is computed by hand from a scripted run's ledger and usage
rows (the rules are in apps/catalog/economics.py); the API, the page, the operators' view."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from apps.billing.models import AccountKind, Entry
from apps.catalog.economics import deployment_economics
from apps.catalog.models import ModelTemplate, ModelUsageLog
from apps.catalog.services.deploy import deployment_create
from apps.pods.metering import meter_tick
from apps.pods.models import PodStatus, UsageRecord
from tests.factories import fund, make_node, report_container

pytestmark = pytest.mark.django_db

PRICE = 690_000  # $0.69 per GPU-hour asked by the host


@pytest.fixture
def scripted_run(user, catalog, settings):
    """A deployment whose one replica ran 600 s, billed by the real metering tick, with five
    usage rows as the proxy writes them: two overlapping requests, one alone, one failed (not
    counted), one before the window (not counted)."""
    settings.CATALOG_OUTPUT_TOKEN_WEIGHT = 3
    fund(user, 100_000_000)
    node = make_node("gpu-host", gpus=1, price=PRICE)
    template = ModelTemplate.objects.get(slug="llama-3.1-8b-instruct")
    deployment = deployment_create(owner=user, template=template, name="llama").deployment
    replica = deployment.replica_set.get()
    t0 = (timezone.now() - timedelta(seconds=900)).replace(microsecond=0)
    report_container(node, replica.pod_id, "running", started_at=t0)
    replica.pod.refresh_from_db()
    assert replica.pod.status == PodStatus.RUNNING
    meter_tick(now=t0 + timedelta(seconds=600))

    def log(at_s, latency_ms, prompt, completion, status=200):
        ModelUsageLog.objects.create(
            deployment=deployment,
            replica_id=replica.pk,
            at=t0 + timedelta(seconds=at_s),
            endpoint="chat/completions",
            status_code=status,
            latency_ms=latency_ms,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )

    log(100, 2000, 100, 50)  # busy [98 s, 100 s]
    log(101, 2000, 300, 150)  # busy [99 s, 101 s]: with the first, 3 s
    log(300, 500, 7, 13)  # busy 0.5 s
    log(200, 100, 1000, 1000, status=500)  # failed: no tokens counted
    log(-10, 100, 5000, 5000)  # before the window
    return deployment, replica, t0


def test_figures_equal_the_hand_computed_ones_exactly(scripted_run):
    deployment, replica, t0 = scripted_run
    record = UsageRecord.objects.get(pod_id=replica.pod_id)
    wallet_debit = Entry.objects.get(
        transaction_id=record.transaction_id, account__kind=AccountKind.USER_WALLET
    ).amount
    cost = -wallet_debit  # what the pod was charged, from the ledger
    assert record.seconds == 600 and record.amount == cost

    figures = deployment_economics(
        deployment=deployment, since=t0, until=t0 + timedelta(seconds=700), operator=True
    )

    # By hand: tokens in 100 + 300 + 7 = 407, out 50 + 150 + 13 = 213; weighted units
    # 407 + 3 × 213 = 1046; input share = floor(cost × 407 / 1046), output = the rest.
    input_share = cost * 407 // 1046
    output_share = cost - input_share
    assert figures["gpu_cost"] == cost
    assert (figures["input_tokens"], figures["output_tokens"]) == (407, 213)
    assert (figures["input_cost"], figures["output_cost"]) == (input_share, output_share)
    assert figures["cost_per_1m_input_tokens"] == input_share * 1_000_000 // 407
    assert figures["cost_per_1m_output_tokens"] == output_share * 1_000_000 // 213
    # 600 replica-seconds, busy 3 + 0.5 s: idle 596.5 s.
    assert figures["replica_seconds"] == 600
    assert figures["busy_seconds"] == 3.5 and figures["idle_seconds"] == 596.5
    assert figures["idle_share"] == round(596.5 / 600, 4)
    # Operators: a platform node, nothing rented upstream, no host share: the margin is it all.
    assert (figures["upstream_cost"], figures["hosts_share"]) == (0, 0)
    assert figures["margin"] == cost


def test_api_owner_staff_other_tenant_and_bad_window(
    scripted_run, user, other_user, django_user_model
):
    deployment, _, _ = scripted_run
    url = f"/api/v1/models/deployments/{deployment.pk}/economics"
    owner, other, staff = APIClient(), APIClient(), APIClient()
    owner.force_authenticate(user)
    other.force_authenticate(other_user)
    staff.force_authenticate(
        django_user_model.objects.create_superuser(email="ops@example.com", password="x")
    )

    mine = owner.get(url, {"window": 3600})
    bad = owner.get(url, {"window": "a day"})

    assert mine.status_code == 200
    body = mine.json()
    assert (
        body["input_tokens"] == 5407 and body["gpu_cost"] > 0
    )  # the hour takes the row before t0 too
    assert "margin" not in body and "upstream_cost" not in body
    assert bad.status_code == 400 and "window" in bad.json()["error"]["fields"]
    assert other.get(url).status_code == 404
    assert APIClient().get(url).status_code == 401
    # Staff see their own deployments only through the owner's API; operators' analytics
    # list every deployment's margin.
    analytics = staff.get("/api/v1/dashboard/cost-analytics").json()
    row = next(r for r in analytics["by_deployment"] if r["deployment"] == str(deployment.pk))
    assert row["gpu_revenue"] == body["gpu_cost"] and row["margin"] == body["gpu_cost"]


def test_deployment_page_shows_cost_per_token(scripted_run, user):
    deployment, _, _ = scripted_run
    client = Client()
    client.force_login(user)

    page = client.get(f"/models/deployments/{deployment.pk}/").content.decode()

    assert 'data-testid="economics-per-1m-input"' in page and "Idle share" in page
