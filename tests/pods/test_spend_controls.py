"""Spend controls, enforced by the metering tick and read by pod creation: no balance, the
monthly cap (80% warning, 100% stop and refuse), the maximum hourly burn."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.billing.models import SpendLimit
from apps.billing.services import wallet_for
from apps.nodes.models import Node
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodStatus
from tests.factories import POD, fund, make_node, report_container

pytestmark = pytest.mark.django_db

RATE = 3_600_000  # $3.60 per GPU-hour: 1,000 micro-dollars a second


def start(client, node, started_ago_s):
    body = client.post("/api/v1/pods/", POD, format="json").json()
    started = timezone.now() - timedelta(seconds=started_ago_s)
    report_container(node, body["id"], "running", started_at=started)
    return Pod.objects.get(pk=body["id"])


def test_no_balance_refuses_new_work(api_client, user):
    make_node()
    api_client.force_authenticate(user)
    response = api_client.post("/api/v1/pods/", POD, format="json")
    assert response.status_code == 402
    assert "top up" in response.json()["error"]["message"]
    assert not Pod.objects.exists()


def test_monthly_cap_caps_the_charge_stops_pods_and_refuses_new_work(owner_client, user):
    node = make_node(price=RATE)
    owner_client.put(
        "/api/v1/users/spend-limits",
        {"monthly_cap_usd": "1.00", "max_hourly_burn_usd": None},
        format="json",
    )
    before = wallet_for(user).balance
    pod = start(owner_client, node, started_ago_s=1800)  # $1.80 of usage waiting
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now())

    result = meter_tick(now=timezone.now())

    assert result.charged == 1_000_000  # exactly the cap
    assert wallet_for(user).balance == before - 1_000_000
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPING and "monthly spend cap" in pod.status_reason
    refused = owner_client.post("/api/v1/pods/", POD, format="json")
    assert refused.status_code == 402 and "monthly spend cap" in refused.json()["error"]["message"]
    limits = owner_client.get("/api/v1/users/spend-limits").json()
    assert limits["month_spent_usd"] == "1.00" and limits["monthly_cap_usd"] == "1.00"


def test_eighty_percent_warning_is_sent_once(owner_client, user):
    node = make_node(price=RATE)
    SpendLimit.objects.create(user=user, monthly_cap=10_000_000)
    start(owner_client, node, started_ago_s=8_500)  # $8.50: 85% of the cap
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=timezone.now())
    mail.outbox.clear()

    meter_tick(now=timezone.now())
    meter_tick(now=timezone.now())

    warnings = [m for m in mail.outbox if "80%" in m.subject]
    assert len(warnings) == 1 and warnings[0].to == [user.email]
    assert Pod.objects.get().status == PodStatus.RUNNING  # a warning, not a stop


def test_hourly_burn_limit_stops_the_newest_pods(owner_client, user):
    node = make_node(gpus=4, price=690_000)
    SpendLimit.objects.create(user=user, max_hourly_burn=1_000_000)  # $1/h
    older = start(owner_client, node, started_ago_s=10)
    newer = start(owner_client, node, started_ago_s=5)  # $1.38/h together

    meter_tick(now=timezone.now())

    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == PodStatus.RUNNING
    assert newer.status == PodStatus.STOPPING and "hourly burn" in newer.status_reason
    refused = owner_client.post("/api/v1/pods/", POD, format="json")
    assert refused.status_code == 201  # $0.69/h running, under the $1/h limit


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"monthly_cap_usd": "-5", "max_hourly_burn_usd": None}, "monthly_cap_usd"),
        ({"monthly_cap_usd": "abc", "max_hourly_burn_usd": None}, "monthly_cap_usd"),
        ({"monthly_cap_usd": None, "max_hourly_burn_usd": "0"}, "max_hourly_burn_usd"),
        ({"monthly_cap_usd": None, "max_hourly_burn_usd": None, "x": 1}, "x"),
    ],
)
def test_spend_limits_bad_input(owner_client, body, field):
    response = owner_client.put("/api/v1/users/spend-limits", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert not SpendLimit.objects.exists()


def test_spend_limits_need_a_login(api_client):
    assert api_client.get("/api/v1/users/spend-limits").status_code == 401


def test_fund_helper_is_exact(user):
    fund(user, 123)
    assert wallet_for(user).balance == 123
