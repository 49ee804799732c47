"""The autoscaler's decisions from a given load (the load's summing over web processes is
tested in tests/proxy/test_load_two_processes.py): up at once past the target, down only after
`scale_down_delay_s` of less load, least-loaded replicas drained first, a draining replica
stopped only when nothing is in flight on it and the grace has passed; every decision an
event with its reason."""

from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from apps.catalog.load import LoadSnapshot
from apps.catalog.models import Deployment, DeploymentStatus, ModelTemplate, Replica, ReplicaStatus
from apps.catalog.services import autoscale
from apps.catalog.services.deploy import deployment_create
from apps.pods.models import Pod, PodStatus
from tests.factories import fund

pytestmark = pytest.mark.django_db
R = ReplicaStatus


@pytest.fixture
def scalable(user, catalog, cpu_node, settings):
    settings.CATALOG_HOST_PORT_RANGE = (29200, 29220)
    fund(user, 100_000_000)
    template = ModelTemplate.objects.get(slug="local-echo-test")
    with TestCase.captureOnCommitCallbacks(execute=True):
        created = deployment_create(
            owner=user,
            template=template,
            name="echo",
            replicas=1,
            scaling={
                "min_replicas": 0,
                "max_replicas": 3,
                "target_concurrency": 2,
                "scale_down_delay_s": 30,
            },
        )
    return created.deployment


def serve(deployment):
    """Every live replica READY (what the agent and the health check do)."""
    Replica.objects.filter(deployment=deployment, status__in=(R.PENDING, R.LOADING)).update(
        status=R.READY, ready_at=timezone.now(), base_url="http://127.0.0.1:1"
    )


def load(deployment, per_replica=None, held=0):
    per_replica = per_replica or {}
    return LoadSnapshot(
        in_flight=dict(per_replica), held={str(deployment.pk): held} if held else {}
    )


def test_scales_up_at_once_past_the_target_within_max(scalable):
    serve(scalable)
    replica = scalable.replica_set.get()

    decision = autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=load(scalable, {replica.pk: 5}, held=2)
    )

    assert (decision.before, decision.after) == (1, 3)  # ceil(7 / 2) = 4, capped at 3
    scalable.refresh_from_db()
    assert scalable.replicas == 3
    assert scalable.replica_set.filter(status__in=(R.PENDING, R.READY)).count() == 3
    event = scalable.events.get(reason__startswith="scale up 1 → 3")
    assert "7 outstanding (5 in flight, 2 waiting) over 1 ready replica" in event.reason


def test_scale_down_waits_for_the_delay_then_drains_the_least_loaded(scalable):
    autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=load(scalable, held=6)
    )  # up to 3
    serve(scalable)
    a, b, c = scalable.replica_set.order_by("pk")
    now = timezone.now()
    quiet = load(scalable, {a.pk: 1, b.pk: 0, c.pk: 2})  # 3 in flight: wants 2

    first = autoscale.deployment_autoscale(deployment_id=scalable.pk, snapshot=quiet, now=now)
    early = autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=quiet, now=now + timedelta(seconds=29)
    )
    late = autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=quiet, now=now + timedelta(seconds=30)
    )

    assert first is None and early is None
    assert (late.before, late.after) == (3, 2)
    assert Replica.objects.get(pk=b.pk).status == R.DRAINING  # the least loaded
    assert {Replica.objects.get(pk=x.pk).status for x in (a, c)} == {R.READY}
    assert f"draining replicas {b.pk}" in late.reason and "for 30 s" in late.reason


def test_load_coming_back_resets_the_delay(scalable):
    serve(scalable)
    replica = scalable.replica_set.get()
    now = timezone.now()
    autoscale.deployment_autoscale(deployment_id=scalable.pk, snapshot=load(scalable), now=now)
    busy = load(scalable, {replica.pk: 1})
    autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=busy, now=now + timedelta(seconds=20)
    )

    later = autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=load(scalable), now=now + timedelta(seconds=40)
    )

    assert later is None  # quiet for 20 s only since the last request
    assert Deployment.objects.get(pk=scalable.pk).replicas == 1


def test_draining_replica_stops_only_when_idle_after_the_grace_then_idle_status(scalable):
    serve(scalable)
    replica = scalable.replica_set.get()
    now = timezone.now()
    autoscale.deployment_autoscale(deployment_id=scalable.pk, snapshot=load(scalable), now=now)
    autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=load(scalable), now=now + timedelta(seconds=31)
    )
    assert Replica.objects.get(pk=replica.pk).status == R.DRAINING
    grace = timedelta(seconds=autoscale.drain_grace_s())
    after = now + timedelta(seconds=31) + grace

    still_streaming = autoscale.replicas_finish_draining(
        snapshot=load(scalable, {replica.pk: 1}), now=after
    )
    too_soon = autoscale.replicas_finish_draining(
        snapshot=load(scalable), now=now + timedelta(seconds=31)
    )
    with TestCase.captureOnCommitCallbacks(execute=True):
        done = autoscale.replicas_finish_draining(snapshot=load(scalable), now=after)

    assert (still_streaming, too_soon, done) == (0, 0, 1)
    assert Replica.objects.get(pk=replica.pk).status == R.STOPPED
    assert Pod.objects.get(pk=replica.pod_id).status in (PodStatus.STOPPING, PodStatus.STOPPED)
    scalable.refresh_from_db()
    assert scalable.status == DeploymentStatus.IDLE and scalable.replicas == 0
    reasons = list(scalable.events.values_list("reason", flat=True))
    assert any(r.startswith("scale down 1 → 0") for r in reasons)
    assert f"replica {replica.pk} drained and stopped" in reasons


def test_a_replica_wanted_while_the_ports_were_held_by_draining_ones_starts_when_one_stops(
    scalable, settings
):
    """Scaled down (its replica draining, holding its host port), then up again with no port
    left: the new replica starts as soon as the drained one stops and frees its port."""
    replica = scalable.replica_set.get()
    settings.CATALOG_HOST_PORT_RANGE = (replica.host_port, replica.host_port)  # one port only
    serve(scalable)
    now = timezone.now()
    autoscale.deployment_autoscale(deployment_id=scalable.pk, snapshot=load(scalable), now=now)
    autoscale.deployment_autoscale(
        deployment_id=scalable.pk, snapshot=load(scalable), now=now + timedelta(seconds=31)
    )
    assert Replica.objects.get(pk=replica.pk).status == R.DRAINING
    with TestCase.captureOnCommitCallbacks(execute=True):
        autoscale.deployment_autoscale(
            deployment_id=scalable.pk,
            snapshot=load(scalable, held=1),
            now=now + timedelta(seconds=32),
        )
    scalable.refresh_from_db()
    assert scalable.replicas == 1
    assert not scalable.replica_set.exclude(pk=replica.pk).exists()  # no port for it yet

    after = now + timedelta(seconds=31 + autoscale.drain_grace_s() + 1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert autoscale.replicas_finish_draining(snapshot=load(scalable), now=after) == 1

    new = scalable.replica_set.exclude(pk=replica.pk).get()
    assert new.status == R.PENDING and new.host_port == replica.host_port


def test_held_request_wakes_an_idle_deployment(scalable):
    scalable.replica_set.update(status=R.STOPPED, pod=None, host_port=None)
    Deployment.objects.filter(pk=scalable.pk).update(replicas=0, status=DeploymentStatus.IDLE)

    with TestCase.captureOnCommitCallbacks(execute=True):
        autoscale.deployment_wake(deployment_id=scalable.pk)

    scalable.refresh_from_db()
    assert scalable.replicas == 1 and scalable.status == DeploymentStatus.PROVISIONING
    assert scalable.replica_set.filter(status=R.PENDING, pod__isnull=False).count() == 1
    assert scalable.events.filter(reason__startswith="scale up 0 → 1").exists()


def test_fixed_deployment_never_moves(user, catalog, cpu_node, settings):
    settings.CATALOG_HOST_PORT_RANGE = (29200, 29220)
    fund(user, 100_000_000)
    template = ModelTemplate.objects.get(slug="local-echo-test")
    fixed = deployment_create(owner=user, template=template, name="fixed").deployment
    serve(fixed)
    replica = fixed.replica_set.get()
    now = timezone.now()

    for seconds, in_flight in ((0, 50), (400, 0), (1000, 0)):
        autoscale.deployment_autoscale(
            deployment_id=fixed.pk,
            snapshot=load(fixed, {replica.pk: in_flight}),
            now=now + timedelta(seconds=seconds),
        )

    assert Deployment.objects.get(pk=fixed.pk).replicas == 1
    assert Replica.objects.get(pk=replica.pk).status == R.READY
