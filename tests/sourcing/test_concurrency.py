"""Every sourcing step is safe to run twice at once: two provisioning passes over the same
PENDING instance rent one machine, and two terminations of one instance end it once."""

import threading

import pytest
from django.db import connection

from apps.pods.models import Pod
from apps.pods.scheduler import schedule_pending
from apps.sourcing import offer_book, services
from apps.sourcing.models import InstanceEvent, InstanceStatus, ProvisionedInstance

pytestmark = pytest.mark.django_db(transaction=True)


def _together(fn, n=2):
    barrier = threading.Barrier(n)
    errors = []

    def run():
        try:
            barrier.wait()
            fn()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_two_passes_at_once_rent_one_machine(sourcing, user):
    offer_book.offer_book_refresh()
    pod = Pod.objects.create(
        owner=user, name="p", image="busybox", gpu_model="RTX 4090", gpu_count=1
    )
    schedule_pending(pod_ids=[pod.pk])
    instance = ProvisionedInstance.objects.get(pod=pod)
    _together(lambda: services.instance_provision(instance_id=instance.pk))
    assert sum(sim.control.stats().get("create", 0) for sim in sourcing.values()) == 1
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.STARTING
    _together(lambda: services.instance_terminate(instance_id=instance.pk, reason="twice"))
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.TERMINATED
    assert (
        InstanceEvent.objects.filter(instance=instance, to_status=InstanceStatus.TERMINATED).count()
        == 1
    )
    live = [i for i in sourcing[instance.provider].control.instances() if not i["terminated"]]
    assert live == []


def test_two_scheduling_passes_at_once_respect_max_instances(sourcing, user, settings):
    settings.SOURCING_MAX_INSTANCES = 1
    offer_book.offer_book_refresh()
    pods = [
        Pod.objects.create(owner=user, name=f"p{i}", image="i", gpu_model="RTX 4090", gpu_count=1)
        for i in range(2)
    ]
    queue = [pods[0].pk, pods[1].pk]
    lock = threading.Lock()

    def one_pass():
        with lock:
            pod_id = queue.pop()
        schedule_pending(pod_ids=[pod_id])

    _together(one_pass)
    assert ProvisionedInstance.objects.count() == 1
