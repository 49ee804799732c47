"""Notification emails (Django's locmem backend): low balance, pods stopped for money, a
provider's node offline, a payout sent. Each goes once per event, however often the tick, the
sweep or the signal runs again; each event also reaches the user's webhook endpoints."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import TestCase
from django.utils import timezone

from apps.nodes.models import Node, NodeStatus
from apps.pods.metering import meter_tick
from apps.pods.models import PodStatus
from apps.providers.models import PayoutEvent, PayoutStatus
from apps.providers.services import (
    payout_approve,
    payout_mark_paid,
    payout_request,
    payout_send,
    provider_register,
)
from apps.webhooks import notify
from apps.webhooks.models import WebhookEvent
from apps.webhooks.services import endpoint_create
from tests.factories import CRYPTO, beat, earn, fund, make_node, running_pod, silent_since, sweep
from tests.fakes.paypal_server import running_paypal

pytestmark = pytest.mark.django_db

RATE = 3_600_000  # $3.60 per GPU-hour


@pytest.fixture(autouse=True)
def _mail(settings, webhook_settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PAYOUT_HOLD_SECONDS = 0
    settings.PAYOUT_MINIMUM_MICROS = 10_000_000


@pytest.fixture
def provider(django_user_model):
    owner = django_user_model.objects.create_user(email="farm@example.com", password="pw-1234567")
    return provider_register(
        owner=owner, display_name="GPU farm", payout_method="CRYPTO", payout_details=dict(CRYPTO)
    ).provider


@pytest.fixture
def paypal(settings):
    with running_paypal() as fake:
        settings.PAYPAL_CLIENT_ID = fake.client_id
        settings.PAYPAL_CLIENT_SECRET = fake.client_secret
        settings.PAYPAL_API_BASE = fake.base_url
        yield fake


def tick(now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return meter_tick(now=now)


def test_node_offline_mails_its_provider_once_per_outage(provider):
    endpoint_create(user=provider.owner, url="http://127.0.0.1:9/h", event_types=["node.offline"])
    now = timezone.now()
    node = make_node("farm-1", gpus=1, provider_id=provider.pk)
    silent_since(node, now - timedelta(seconds=301))

    sweep(now)
    sweep(now + timedelta(seconds=10))
    sweep(now + timedelta(minutes=5))

    assert Node.objects.get(pk=node.pk).status == NodeStatus.OFFLINE
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["farm@example.com"] and "farm-1" in message.subject
    assert "no heartbeat" in message.body
    assert WebhookEvent.objects.filter(type="node.offline").count() == 1

    # a second outage after it came back is a new event: one more mail (the sweep runs every
    # 10 s meanwhile, as beat runs it)
    later = now + timedelta(minutes=5, seconds=10)
    beat(node, later)
    assert Node.objects.get(pk=node.pk).status != NodeStatus.OFFLINE
    for step in range(1, 33):
        sweep(later + timedelta(seconds=10 * step))
    assert Node.objects.get(pk=node.pk).status == NodeStatus.OFFLINE
    assert len(mail.outbox) == 2


def test_a_platform_node_offline_mails_no_provider(user):
    now = timezone.now()
    node = make_node("platform-1", gpus=1)
    silent_since(node, now - timedelta(seconds=301))
    sweep(now)
    assert Node.objects.get(pk=node.pk).status == NodeStatus.OFFLINE
    assert mail.outbox == []


def test_payout_sent_mails_the_provider_once(provider, django_user_model):
    operator = django_user_model.objects.create_user(
        email="ops@example.com", password="pw-1234567", is_staff=True
    )
    earn(provider, 30_000_000)
    payout = payout_request(
        provider=provider, amount=12_340_000, method="CRYPTO", details=CRYPTO
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=True):
        payout_approve(payout=payout, operator=operator)
    with TestCase.captureOnCommitCallbacks(execute=True):
        sent = payout_send(payout_id=payout.pk)
    assert sent.status == PayoutStatus.SENT  # a crypto transfer waiting for its signature
    assert not [m for m in mail.outbox if "payout" in m.subject.lower()]

    with TestCase.captureOnCommitCallbacks(execute=True):
        paid = payout_mark_paid(payout=sent, reference="0x" + "ab" * 32, operator=operator)
    with TestCase.captureOnCommitCallbacks(execute=True):
        payout_send(payout_id=payout.pk)  # a second run of the send task
        notify.payout_status_changed(PayoutEvent.objects.get(to_status=PayoutStatus.PAID))

    assert paid.status == PayoutStatus.PAID
    sent_mails = [m for m in mail.outbox if "payout" in m.subject.lower()]
    assert len(sent_mails) == 1
    assert sent_mails[0].subject == "Your payout of $12.34 was sent"
    assert sent_mails[0].to == ["farm@example.com"]
    statuses = [e.data["status"] for e in WebhookEvent.objects.filter(type="payout.status_changed")]
    assert statuses == []  # no endpoint: events are not recorded


def test_paypal_payout_mails_when_sent(provider, django_user_model, paypal):
    operator = django_user_model.objects.create_user(
        email="ops@example.com", password="pw-1234567", is_staff=True
    )
    endpoint_create(user=provider.owner, url="http://127.0.0.1:9/h")
    earn(provider, 30_000_000)
    details = {"email": "farm@example.com"}
    payout = payout_request(
        provider=provider, amount=20_000_000, method="PAYPAL", details=details
    ).payout
    with TestCase.captureOnCommitCallbacks(execute=True):
        payout_approve(payout=payout, operator=operator)
    with TestCase.captureOnCommitCallbacks(execute=True):
        sent = payout_send(payout_id=payout.pk)

    assert sent.status == PayoutStatus.SENT
    sent_mails = [m for m in mail.outbox if "payout" in m.subject.lower()]
    assert [m.subject for m in sent_mails] == ["Your payout of $20.00 was sent"]
    events = WebhookEvent.objects.filter(type="payout.status_changed").order_by("created_at")
    assert [e.data["status"] for e in events][-2:] == ["PROCESSING", "SENT"]


def test_low_balance_mail_goes_once_a_day_and_a_webhook_once(user, api_client):
    endpoint_create(user=user, url="http://127.0.0.1:9/h", event_types=["balance.low"])
    fund(user, 1_000_000)  # $1: 16 minutes of a $3.60/h pod
    now = timezone.now()
    node = make_node("n1", gpus=1, price=RATE)
    running_pod(user, node, started=now - timedelta(seconds=30))
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=now + timedelta(seconds=90))

    tick(now)
    tick(now + timedelta(seconds=60))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert notify.balances_low_notify(now=now) == 1
        assert notify.balances_low_notify(now=now + timedelta(minutes=5)) == 0

    low = [m for m in mail.outbox if "running low" in m.subject]
    assert len(low) == 1 and low[0].to == [user.email]
    event = WebhookEvent.objects.get(type="balance.low")
    assert event.data["balance_usd"] and event.data["burn_usd_per_hour"] == "3.60"


def test_pods_stopped_for_money_mail_goes_once(user):
    fund(user, 50_000)  # five cents: 50 s of the pod
    now = timezone.now()
    node = make_node("n1", gpus=1, price=RATE)
    pod = running_pod(user, node, started=now - timedelta(seconds=120))
    Node.objects.filter(pk=node.pk).update(last_heartbeat_at=now + timedelta(minutes=5))

    tick(now)
    pod.refresh_from_db()
    assert pod.status in (PodStatus.STOPPING, PodStatus.STOPPED)
    tick(now + timedelta(seconds=60))  # the agent has not confirmed the stop yet
    tick(now + timedelta(seconds=120))

    stopped = [m for m in mail.outbox if "were stopped" in m.subject]
    assert len(stopped) == 1, [m.subject for m in mail.outbox]
    assert "balance exhausted" in stopped[0].body
