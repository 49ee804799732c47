"""Signed events reach a real HTTP receiver through a real Celery worker: a pod's RUNNING and
STOPPED, and a receiver that fails twice gets the event on the third try."""

import pytest
from django.test import Client

from apps.nodes.models import CommandType, NodeCommand
from apps.pods.models import PodStatus
from apps.pods.services import pod_create, pod_stop
from apps.webhooks.models import DeliveryStatus, WebhookDelivery
from apps.webhooks.services import endpoint_create, retry_delay
from apps.webhooks.signing import SIGNATURE_HEADER, verify
from tests.factories import ack, fund, make_host, report_container

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"name": "hooked", "image": "img", "gpu_model": "H100 SXM", "gpu_count": 1}


def pod_events(requests, pod_id):
    return [
        r
        for r in requests
        if r.json["type"] == "pod.status_changed" and r.json["data"]["pod_id"] == str(pod_id)
    ]


def test_pod_running_and_stopped_arrive_signed(user, receiver, celery_worker_thread):
    created = endpoint_create(user=user, url=receiver.url, event_types=["pod.status_changed"])
    fund(user, 100_000_000)
    node = make_host("hooked-node", gpus=1)

    pod = pod_create(owner=user, spec=SPEC).pod
    report_container(node, pod.pk, "running")
    pod_stop(pod=pod)
    stop = NodeCommand.objects.filter(type=CommandType.STOP_POD, payload__pod_id=str(pod.pk))
    ack(node, stop.latest("created_at").pk, succeeded=True, result={"state": "removed"})
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPED

    def both_arrived(requests):
        statuses = {r.json["data"]["status"] for r in pod_events(requests, pod.pk)}
        return {"RUNNING", "STOPPED"} <= statuses

    receiver.wait_for(both_arrived)
    for request in pod_events(receiver.requests, pod.pk):
        assert request.headers["X-GCO-Event"] == "pod.status_changed"
        assert verify(
            secret=created.secret, body=request.body, header=request.headers[SIGNATURE_HEADER]
        ), request.headers
        assert not verify(
            secret=created.secret,
            body=request.body + b" ",
            header=request.headers[SIGNATURE_HEADER],
        )
    running = next(
        r for r in pod_events(receiver.requests, pod.pk) if r.json["data"]["status"] == "RUNNING"
    )
    assert running.json["data"]["name"] == "hooked"
    assert running.json["data"]["from_status"] in ("SCHEDULED", "STARTING")


def test_a_receiver_failing_twice_gets_the_event_on_the_third_try(
    user, receiver, celery_worker_thread, webhook_settings
):
    receiver.fail_first = 2
    created = endpoint_create(user=user, url=receiver.url, event_types=["pod.status_changed"])
    fund(user, 100_000_000)
    make_host("retry-node", gpus=1)

    pod = pod_create(owner=user, spec=SPEC).pod  # PENDING → SCHEDULED: one event

    receiver.wait_for(lambda requests: len(pod_events(requests, pod.pk)) >= 3)
    first, second, third = pod_events(receiver.requests, pod.pk)[:3]
    assert first.json == second.json == third.json  # the same event, resent
    assert first.headers["X-GCO-Delivery"] == third.headers["X-GCO-Delivery"]
    delivery = WebhookDelivery.objects.get(pk=third.headers["X-GCO-Delivery"])

    def settled():
        delivery.refresh_from_db()
        return delivery.status == DeliveryStatus.SUCCEEDED

    receiver.wait_for(lambda _: settled())
    log = list(delivery.log.all())
    assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 500), (3, 204)]
    # the waits between tries double, up to the cap
    assert [retry_delay(n) for n in (1, 2, 3)] == [0.2, 0.4, 0.8]
    webhook_settings.WEBHOOK_RETRY_MAX_S = 0.5
    assert retry_delay(3) == 0.5

    # the owner reads the same log through the API and the portal
    client = Client()
    client.force_login(user)
    deliveries = client.get(f"/api/v1/webhooks/endpoints/{created.endpoint.pk}/deliveries")
    body = deliveries.json()["results"][0]
    assert body["status"] == "SUCCEEDED" and [a["status_code"] for a in body["log"]] == [
        500,
        500,
        204,
    ]
    page = client.get(f"/settings/webhooks/{created.endpoint.pk}/")
    assert page.status_code == 200 and b"HTTP 500" in page.content and b"HTTP 204" in page.content
