"""Portal pages for the pods-for-work features: the volumes page, the pod form with a template,
a volume and more CPU, and the pod page's OOM notice, resources, SSH line and Resume button."""

import pytest
from django.test import Client

from apps.nodes.models import CommandType, NodeCommand
from apps.pods.models import Pod, PodStatus, PodTemplate, Volume
from apps.pods.services import pod_create
from tests.factories import ack, fund, make_host

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user):
    fund(user, 100_000_000)
    client = Client()
    client.force_login(user)
    return client


def test_volumes_page_creates_lists_and_deletes(browser, user, other_user):
    node = make_host(disk_gb=100)

    too_big = browser.post("/pods/volumes/", {"name": "x", "size_gb": 500})
    assert too_big.status_code == 400 and b"No node can hold 500 GB" in too_big.content
    made = browser.post(
        "/pods/volumes/", {"name": "my-datasets", "size_gb": 10, "node": str(node.pk)}, follow=True
    )
    assert made.status_code == 200 and b"my-datasets" in made.content
    volume = Volume.objects.get()
    assert volume.owner == user and volume.node == node

    other = Client()
    other.force_login(other_user)
    assert b"my-datasets" not in other.get("/pods/volumes/").content
    assert other.post(f"/pods/volumes/{volume.pk}/delete").status_code == 404

    browser.post(f"/pods/volumes/{volume.pk}/delete")
    volume.refresh_from_db()
    assert volume.status == "DELETING"


def test_pod_form_takes_a_template_a_volume_and_more_cpu(browser, user):
    node = make_host()
    PodTemplate.objects.create(
        owner=user,
        slug="mine",
        name="Mine",
        image="img:1",
        command=["sleep", "9"],
        env={"A": "1"},
        volume_mount_path="/data",
    )
    volume = Volume.objects.create(
        owner=user,
        name="v",
        size_gb=5,
        node=node,
        price_per_gb_month=1,
        created_at=node.registered_at,
        status="READY",
    )

    response = browser.post(
        "/pods/new/",
        {
            "idempotency_key": "k1",
            "template": "mine",
            "name": "from-form",
            "gpu_model": "H100 SXM",
            "gpu_count": 1,
            "vcpus": "3",
            "volume": str(volume.pk),
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    pod = Pod.objects.get()
    assert (pod.image, pod.command, pod.env) == ("img:1", ["sleep", "9"], {"A": "1"})
    assert (pod.volume_id, pod.volume_mount_path, pod.cpu_millicores) == (volume.pk, "/data", 3000)


def test_pod_page_shows_oom_resources_ssh_and_resume(browser, user):
    node = make_host()
    pod = pod_create(
        owner=user,
        spec={"name": "p", "image": "i", "gpu_model": "H100 SXM", "gpu_count": 1},
    ).pod
    Pod.objects.filter(pk=pod.pk).update(endpoints={"22/tcp": "198.51.100.4:40022"})

    page = browser.get(f"/pods/{pod.pk}/").content.decode()
    assert "8 vCPU, 65536 MB RAM, 32768 MB shm, 20 GB disk" in page
    assert "ssh root@198.51.100.4 -p 40022" in page

    Pod.objects.filter(pk=pod.pk).update(
        status=PodStatus.FAILED, oom_killed=True, status_reason="out of memory"
    )
    assert "Out of memory" in browser.get(f"/pods/{pod.pk}/").content.decode()

    Pod.objects.filter(pk=pod.pk).update(status=PodStatus.STOPPED, oom_killed=False)
    pod.allocations.all().delete()
    assert 'data-testid="resume"' in browser.get(f"/pods/{pod.pk}/").content.decode()
    browser.post(f"/pods/{pod.pk}/resume")
    pod.refresh_from_db()
    assert pod.status == PodStatus.SCHEDULED and pod.node_id == node.pk
    ack(
        node,
        NodeCommand.objects.filter(type=CommandType.START_POD).latest("created_at").pk,
        succeeded=True,
        result={"state": "running"},
    )
