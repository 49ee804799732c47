"""Idempotency-Key on pod creation (docs/idempotency.md): a replay is the first response
(status and body, not the pod's state now), another body under the key is a 422, a key in
flight is a 409, refusals are not remembered, and keys expire after 24 h."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.idempotency import idempotency_purge
from apps.core.models import IdempotencyRecord
from apps.core.schedule import SCHEDULE
from apps.pods.models import Pod
from apps.pods.services import pod_stop
from tests.factories import POD, fund, make_node

pytestmark = pytest.mark.django_db

URL = "/api/v1/pods/"


def create(client, body=None, key="k-1"):
    return client.post(URL, body or POD, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_replay_returns_the_original_status_and_body_not_the_pods_state_now(owner_client):
    make_node(gpus=4)
    first = create(owner_client)
    pod_stop(pod=Pod.objects.get())  # the pod moves on

    again = create(owner_client)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.json()["status"] != Pod.objects.get().status  # the answer, not the state
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    assert Pod.objects.count() == 1


def test_the_same_key_with_another_body_is_a_422_and_creates_nothing(owner_client):
    make_node(gpus=4)
    create(owner_client)

    response = create(owner_client, {**POD, "name": "another"})

    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["error"]["message"]
    assert Pod.objects.count() == 1


def test_key_order_and_spacing_do_not_make_another_body(owner_client):
    make_node(gpus=4)
    create(owner_client)
    reordered = dict(reversed(list(POD.items())))

    assert create(owner_client, reordered).status_code == 201
    assert Pod.objects.count() == 1


def test_a_key_still_in_flight_is_a_409(owner_client, user):
    first = create(owner_client, key="racing")
    record = IdempotencyRecord.objects.get(key="racing")
    IdempotencyRecord.objects.filter(pk=record.pk).update(status_code=None, response_body=None)

    response = create(owner_client, key="racing")

    assert first.status_code == 201 and response.status_code == 409
    assert Pod.objects.count() == 1


def test_keys_expire_after_24_hours(owner_client):
    make_node(gpus=4)
    first = create(owner_client)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    later = create(owner_client)

    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    assert Pod.objects.count() == 2
    assert "Idempotent-Replayed" not in later


def test_a_refused_request_is_not_remembered(owner_client):
    bad = create(owner_client, {**POD, "gpu_count": 0})
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.exists()

    assert create(owner_client, {**POD, "gpu_count": 0}).status_code == 400
    assert create(owner_client).status_code == 201  # the key was never taken


def test_one_users_key_is_not_anothers(owner_client, api_client, other_user):
    make_node(gpus=4)
    mine = create(owner_client)
    api_client.force_authenticate(other_user)
    fund(other_user, 100_000_000)
    theirs = create(api_client)

    assert theirs.status_code == 201 and theirs.json()["id"] != mine.json()["id"]


def test_expired_records_are_purged_hourly(owner_client):
    create(owner_client, key="old")
    create(owner_client, key="new")
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    assert idempotency_purge() == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    assert any(e.task == "core.purge_idempotency_keys" for e in SCHEDULE)
