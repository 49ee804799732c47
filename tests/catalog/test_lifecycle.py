"""A deployment's life driven through the real node protocol services (what an agent's acks and
heartbeats do), with a real echo backend answering the health path."""

import subprocess
import sys

import pytest
from django.test import TestCase

from apps.catalog.models import (
    Deployment,
    DeploymentStatus,
    ModelTemplate,
    Replica,
    ReplicaStatus,
)
from apps.catalog.services import health, provisioning
from apps.catalog.services.deploy import deployment_create, deployment_stop
from apps.nodes.models import CommandType, NodeCommand
from apps.pods.models import Pod, PodStatus
from tests.factories import ack, fund, report_container
from tests.support import ROOT, Backend, answers, free_port, wait_for

pytestmark = pytest.mark.django_db

D, R = DeploymentStatus, ReplicaStatus


@pytest.fixture
def port(settings):
    chosen = free_port()
    settings.CATALOG_HOST_PORT_RANGE = (chosen, chosen)
    return chosen


@pytest.fixture
def deployed(user, catalog, cpu_node, port):
    fund(user, 100_000_000)
    with TestCase.captureOnCommitCallbacks(execute=True):
        created = deployment_create(
            owner=user, template=ModelTemplate.objects.get(slug="local-echo-test")
        )
    return created.deployment


def start_container(node, replica: Replica) -> None:
    """What the agent does with start_pod: ack with the published port, report it running."""
    command = NodeCommand.objects.get(
        node=node, type=CommandType.START_POD, payload__pod_id=str(replica.pod_id)
    )
    assert command.payload["command"][-4:] == [
        "--port",
        str(replica.port),
        "--name",
        "local-echo-test",
    ]
    ack(
        node,
        command.pk,
        succeeded=True,
        result={
            "container_id": "c" * 12,
            "state": "running",
            "ports": {f"{replica.port}/tcp": replica.port},
        },
    )
    report_container(node, replica.pod_id, "running")


def test_deployment_goes_ready_when_its_replica_answers_health(deployed, cpu_node, port):
    replica = deployed.replica_set.get()
    assert replica.pod.status == PodStatus.SCHEDULED and replica.host_port == port
    assert Deployment.objects.get(pk=deployed.pk).status == D.PROVISIONING

    start_container(cpu_node, replica)
    replica.refresh_from_db()
    assert replica.status == R.LOADING
    assert replica.base_url == f"http://127.0.0.1:{port}"  # from the ack's ports
    assert Pod.objects.get(pk=replica.pod_id).endpoints == {f"{port}/tcp": f"127.0.0.1:{port}"}
    assert Deployment.objects.get(pk=deployed.pk).status == D.LOADING

    health.replicas_health_check()  # nothing listens yet
    assert Replica.objects.get(pk=replica.pk).status == R.LOADING

    server = _serve_on(port)
    try:
        health.replicas_health_check()
        assert Replica.objects.get(pk=replica.pk).status == R.READY
        assert Deployment.objects.get(pk=deployed.pk).status == D.READY
    finally:
        server.kill()

    # The backend died: after two failed checks the replica leaves service.
    health.replicas_health_check()
    assert Replica.objects.get(pk=replica.pk).status == R.READY
    health.replicas_health_check()
    assert Replica.objects.get(pk=replica.pk).status == R.UNHEALTHY
    assert Deployment.objects.get(pk=deployed.pk).status == D.DEGRADED


def _serve_on(port: int) -> Backend:
    proc = subprocess.Popen(
        [sys.executable, "-m", "backends", "echo-test", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    backend = Backend(name="echo", port=port, proc=proc)
    wait_for(lambda: answers(backend.url + "/health"), "echo backend")
    return backend


def test_a_failed_pod_is_replaced(deployed, cpu_node, settings):
    replica = deployed.replica_set.get()
    start_container(cpu_node, replica)
    spare = free_port()
    settings.CATALOG_HOST_PORT_RANGE = (spare, spare)

    report_container(cpu_node, replica.pod_id, "exited", exit_code=1)

    replica.refresh_from_db()
    assert replica.status == R.FAILED and replica.host_port is None
    assert Pod.objects.get(pk=replica.pod_id).status == PodStatus.FAILED
    replacement = deployed.replica_set.exclude(pk=replica.pk).get()
    assert replacement.status == R.PENDING and replacement.pod.status == PodStatus.SCHEDULED


def test_replicas_that_keep_failing_fail_the_deployment(deployed, cpu_node, settings):
    for _ in range(provisioning.MIN_FAILURE_BUDGET):
        replica = deployed.replica_set.filter(status__in=(R.PENDING, R.LOADING)).get()
        spare = free_port()
        settings.CATALOG_HOST_PORT_RANGE = (spare, spare)
        report_container(cpu_node, replica.pod_id, "exited", exit_code=1)

    deployment = Deployment.objects.get(pk=deployed.pk)
    assert deployment.status == D.FAILED
    assert "3 replicas failed" in deployment.status_reason
    assert not deployed.replica_set.filter(status__in=(R.PENDING, R.LOADING, R.READY)).exists()


def test_periodic_passes_are_idempotent(deployed, cpu_node):
    before = list(Replica.objects.values_list("pk", "status"))

    assert provisioning.deployments_provision_pending().replicas_created == 0
    provisioning.deployments_sync_status()
    provisioning.deployments_sync_status()

    assert list(Replica.objects.values_list("pk", "status")) == before


def test_stop_ends_the_pods_and_the_keys(deployed, cpu_node):
    replica = deployed.replica_set.get()
    start_container(cpu_node, replica)

    with TestCase.captureOnCommitCallbacks(execute=True):
        deployment_stop(deployment=deployed)

    assert Deployment.objects.get(pk=deployed.pk).status == D.STOPPED
    assert Pod.objects.get(pk=replica.pod_id).status == PodStatus.STOPPING
    replica.refresh_from_db()
    assert replica.status == R.STOPPED and replica.host_port is None
    report_container(cpu_node, replica.pod_id, "removed")
    assert Deployment.objects.get(pk=deployed.pk).status == D.STOPPED


def test_periodic_sync_catches_a_pod_change_whose_signal_was_missed(deployed, port):
    replica = deployed.replica_set.get()
    # The pod runs, but the catalog was not told (e.g. a web process died after the commit).
    Pod.objects.filter(pk=replica.pod_id).update(
        status=PodStatus.RUNNING, endpoints={f"{port}/tcp": f"127.0.0.1:{port}"}
    )

    provisioning.deployments_sync_status()

    replica.refresh_from_db()
    assert replica.status == R.LOADING and replica.base_url == f"http://127.0.0.1:{port}"
    assert Deployment.objects.get(pk=deployed.pk).status == D.LOADING
