"""Stop keeps a pod (and its volume) for later; resume goes back to the same node when its GPUs
are free there, else waits there and says why; terminate ends it for good."""

import pytest
from django.test import TestCase

from apps.nodes import services as node_services
from apps.nodes.models import CommandType, Node, NodeCommand, NodeStatus
from apps.pods.models import Pod, PodStatus
from apps.pods.scheduler import BatchOutcome, schedule_pending
from apps.pods.services import PodNotResumableError, pod_create, pod_resume, pod_stop
from apps.pods.volumes import GB
from tests.factories import ack, fund, make_host, report_container

pytestmark = pytest.mark.django_db

SPEC = {"name": "p", "image": "img", "gpu_model": "H100 SXM", "gpu_count": 1}


def stopped_pod(user, node: Node) -> Pod:
    pod = pod_create(owner=user, spec=SPEC).pod
    assert pod.node_id == node.pk
    report_container(node, pod.pk, "running")
    pod_stop(pod=pod)
    stop = NodeCommand.objects.filter(type=CommandType.STOP_POD, payload__pod_id=str(pod.pk))
    ack(node, stop.latest("created_at").pk, succeeded=True, result={"state": "removed"})
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPED and not pod.allocations.exists()
    return pod


@pytest.fixture
def funded(user):
    fund(user, 100_000_000)
    return user


def test_resume_goes_back_to_the_same_node(funded):
    home = make_host("home", gpus=1)
    pod = stopped_pod(funded, home)
    cheaper = make_host("cheaper", gpus=1)
    Node.objects.filter(pk=cheaper.pk).update(price_per_gpu_hour=1)

    resumed = pod_resume(pod=pod)

    assert resumed.status == PodStatus.SCHEDULED
    assert resumed.node_id == home.pk
    assert resumed.started_at is None and resumed.billed_until is None
    assert [e.reason for e in resumed.events.all()][-2:] == [
        "resumed by its owner",
        resumed.status_reason,
    ]


def test_resume_waits_for_its_node_and_says_why(funded):
    home = make_host("home", gpus=1)
    pod = stopped_pod(funded, home)
    squatter = pod_create(owner=funded, spec=SPEC).pod  # takes home's only GPU meanwhile
    assert squatter.node_id == home.pk
    make_host("elsewhere", gpus=1)

    resumed = pod_resume(pod=pod)

    assert resumed.status == PodStatus.PENDING and resumed.node_id == home.pk
    assert resumed.status_reason == (
        "Waiting for node home (it resumes where it ran): 0 of the 1 H100 SXM GPU(s) it needs "
        "are free."
    )

    # when the node goes offline the reason says so
    Node.objects.filter(pk=home.pk).update(status=NodeStatus.OFFLINE)
    schedule_pending()
    resumed.refresh_from_db()
    assert "the node is OFFLINE" in resumed.status_reason

    # and once the GPU is free again on an online node, the pod is placed there
    Node.objects.filter(pk=home.pk).update(status=NodeStatus.ONLINE)
    Pod.objects.filter(pk=squatter.pk).update(status=PodStatus.FAILED)
    squatter.allocations.all().delete()
    schedule_pending()
    resumed.refresh_from_db()
    assert resumed.status == PodStatus.SCHEDULED and resumed.node_id == home.pk


def test_only_a_stopped_pod_resumes_and_terminate_is_final(funded, owner_client):
    node = make_host(gpus=1)
    running = pod_create(owner=funded, spec=SPEC).pod
    with pytest.raises(PodNotResumableError, match="SCHEDULED"):
        pod_resume(pod=running)
    assert owner_client.post(f"/api/v1/pods/{running.pk}/resume").status_code == 409

    pod_stop(pod=running)
    ack(
        node,
        NodeCommand.objects.get(type=CommandType.STOP_POD).pk,
        succeeded=True,
        result={"state": "removed"},
    )
    assert owner_client.delete(f"/api/v1/pods/{running.pk}").json()["status"] == "TERMINATED"
    refused = owner_client.post(f"/api/v1/pods/{running.pk}/resume")
    assert refused.status_code == 409
    assert "only a stopped pod" in refused.json()["error"]["message"]


def test_resume_is_owner_only(funded, api_client, other_user):
    node = make_host(gpus=1)
    pod = stopped_pod(funded, node)
    api_client.force_authenticate(other_user)
    assert api_client.post(f"/api/v1/pods/{pod.pk}/resume").status_code == 404
    api_client.force_authenticate(None)
    assert api_client.post(f"/api/v1/pods/{pod.pk}/resume").status_code == 401
    assert Pod.objects.get(pk=pod.pk).status == PodStatus.STOPPED


OFFERED: list = []


def recording_source(pods: list[Pod], capacity: object) -> BatchOutcome:
    """A second capacity source (as the sourcing app's upstream clouds are) that places
    nothing and records what it was offered."""
    OFFERED.extend(p.pk for p in pods)
    return BatchOutcome()


def test_a_pinned_pod_is_never_offered_to_other_capacity_sources(funded, settings):
    settings.POD_CAPACITY_SOURCES = [
        "apps.pods.scheduler.community_nodes",
        "tests.pods.test_stop_resume.recording_source",
    ]
    home = make_host("home", gpus=1)
    pod = stopped_pod(funded, home)
    pod_create(owner=funded, spec=SPEC)  # takes home's GPU
    OFFERED.clear()

    resumed = pod_resume(pod=pod)  # pinned to home, which is full
    unpinned = pod_create(owner=funded, spec=SPEC).pod  # may go anywhere: offered upstream

    assert resumed.status == PodStatus.PENDING
    assert resumed.pk not in OFFERED
    assert unpinned.pk in OFFERED


def test_a_resumed_pod_forgets_its_last_runs_disk_measurement(funded):
    node = make_host("home", gpus=1)
    pod = pod_create(owner=funded, spec={**SPEC, "disk_gb": 2}).pod
    report_container(node, pod.pk, "running")

    def beat(container_id: str, disk: int | None) -> None:
        item = {
            "pod_id": str(pod.pk),
            "container_id": container_id,
            "state": "running",
            "exit_code": None,
            "error": "",
        }
        if disk is not None:
            item["disk_used_bytes"] = disk
        with TestCase.captureOnCommitCallbacks(execute=True):
            node_services.node_heartbeat(node=node, gpus=[], system={}, containers=[item])

    beat("c" * 12, 3 * GB)  # over its 2 GB: stopped
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPING and "over its 2 GB limit" in pod.status_reason
    stop = NodeCommand.objects.filter(type=CommandType.STOP_POD).latest("created_at")
    ack(node, stop.pk, succeeded=True, result={"state": "removed"})

    resumed = pod_resume(pod=pod)
    assert resumed.status == PodStatus.SCHEDULED
    beat("d" * 12, None)  # the new container runs; nothing measured yet
    beat("e" * 12, None)
    resumed.refresh_from_db()
    assert resumed.status == PodStatus.RUNNING
