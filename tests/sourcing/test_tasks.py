"""The periodic sourcing work is declared in the schedule and runs as Celery tasks."""

import pytest

from apps.core.schedule import SCHEDULE

pytestmark = pytest.mark.django_db


def test_schedule_names_registered_tasks():
    from config.celery import app

    app.loader.import_default_modules()
    ours = {e.task: e.every_seconds for e in SCHEDULE if e.task.startswith("sourcing.")}
    assert ours == {
        "sourcing.refresh_offers": 60,
        "sourcing.provisioning_tick": 10,
        "sourcing.reconcile": 60,
        "sourcing.accrue_upstream_costs": 60,
    }
    assert set(ours) <= set(app.tasks)


def test_tasks_run_and_do_nothing_upstream_when_sourcing_is_off(sourcing, settings):
    from apps.sourcing import tasks

    settings.SOURCING_ENABLED = False
    settings.AUTO_PROVISIONING_ENABLED = False
    assert tasks.refresh_offers() == 0
    assert tasks.provisioning_tick() == 0
    assert tasks.reconcile() == 0
    assert tasks.accrue_upstream_costs() == 0
    assert sum(sim.control.stats().get("total", 0) for sim in sourcing.values()) == 0


def test_a_machine_request_dispatches_the_rent_after_commit(
    sourcing, user, django_capture_on_commit_callbacks
):
    from apps.pods.models import Pod, PodStatus
    from apps.pods.scheduler import schedule_pending
    from apps.sourcing import offer_book
    from apps.sourcing.models import InstanceStatus, ProvisionedInstance
    from apps.sourcing.tasks import provision_instance

    offer_book.offer_book_refresh()
    pod = Pod.objects.create(owner=user, name="p", image="i", gpu_model="RTX 4090", gpu_count=1)
    with django_capture_on_commit_callbacks() as callbacks:
        schedule_pending(pod_ids=[pod.pk])
    assert Pod.objects.get(pk=pod.pk).status == PodStatus.PROVISIONING
    instance = ProvisionedInstance.objects.get(pod=pod)
    assert instance.status == InstanceStatus.PENDING and len(callbacks) == 1
    conf = provision_instance.app.conf
    eager = conf.task_always_eager
    conf.task_always_eager = True  # run the dispatched task here instead of on a worker
    try:
        callbacks[0]()
    finally:
        conf.task_always_eager = eager
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.STARTING and instance.provider_instance_id
