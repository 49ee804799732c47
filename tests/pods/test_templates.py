"""Pod templates: operators publish the standard set (idempotently), users save their own, and a
pod request names one as defaults that its own values override."""

import pytest
from django.core.management import call_command

from apps.nodes.models import CommandType, NodeCommand
from apps.pods.models import Pod, PodTemplate
from apps.pods.pod_templates import PUBLIC_TEMPLATES
from tests.factories import make_host

pytestmark = pytest.mark.django_db

MINE = {
    "slug": "trainer",
    "name": "My trainer",
    "image": "local/busybox:1",
    "command": ["sh", "-c", "echo $MODE; sleep 300"],
    "env": {"MODE": "train", "SEED": "1"},
    "ports": [{"container_port": 8888}],
    "volume_mount_path": "/data",
    "recommended_gpu_model": "H100 SXM",
}


def start_payload(pod_id: str) -> dict:
    return NodeCommand.objects.get(type=CommandType.START_POD, payload__pod_id=pod_id).payload


def test_seeding_publishes_the_standard_set_once(capsys):
    call_command("seed_pod_templates")
    call_command("seed_pod_templates")

    slugs = set(
        PodTemplate.objects.filter(owner__isnull=True, is_public=True).values_list(
            "slug", flat=True
        )
    )
    assert slugs == {"pytorch-jupyter", "vllm", "comfyui", "ubuntu-cuda"}
    assert PodTemplate.objects.count() == len(PUBLIC_TEMPLATES)
    assert "0 created, 4 updated" in capsys.readouterr().out


def test_a_template_based_pod_starts_with_the_templates_values(owner_client):
    make_host()
    saved = owner_client.post("/api/v1/pod-templates/", MINE, format="json")
    assert saved.status_code == 201, saved.json()

    response = owner_client.post("/api/v1/pods/", {"template": "trainer"}, format="json")

    assert response.status_code == 201, response.json()
    pod = Pod.objects.get(pk=response.json()["id"])
    assert (pod.name, pod.image, pod.gpu_model, pod.gpu_count) == (
        "trainer",
        "local/busybox:1",
        "H100 SXM",
        1,
    )
    assert str(pod.template_id) == saved.json()["id"]
    payload = start_payload(str(pod.pk))
    assert payload["command"] == MINE["command"]
    assert payload["env"] == {"MODE": "train", "SEED": "1"}
    assert [p["container_port"] for p in payload["ports"]] == [8888]


def test_the_requests_values_override_the_template(owner_client):
    node = make_host()
    owner_client.post("/api/v1/pod-templates/", MINE, format="json")
    volume = owner_client.post(
        "/api/v1/volumes/", {"name": "v", "size_gb": 5, "node": str(node.pk)}, format="json"
    ).json()

    response = owner_client.post(
        "/api/v1/pods/",
        {
            "template": "trainer",
            "name": "mine",
            "image": "local/busybox:2",
            "env": {"MODE": "eval"},
            "volume": volume["id"],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["image"]) == ("mine", "local/busybox:2")
    payload = start_payload(body["id"])
    assert payload["env"] == {"MODE": "eval", "SEED": "1"}  # merged, the request's value wins
    assert payload["volumes"][0]["mount_path"] == "/data"  # the template's mount path


def test_public_templates_are_for_everyone_own_ones_only_for_their_owner(
    owner_client, api_client, other_user
):
    call_command("seed_pod_templates")
    mine = owner_client.post("/api/v1/pod-templates/", MINE, format="json").json()
    api_client.force_authenticate(other_user)

    listed = {t["slug"] for t in api_client.get("/api/v1/pod-templates/").json()}
    assert "pytorch-jupyter" in listed and "trainer" not in listed
    assert api_client.get(f"/api/v1/pod-templates/{mine['id']}").status_code == 404
    assert api_client.delete(f"/api/v1/pod-templates/{mine['id']}").status_code == 404
    refused = api_client.post("/api/v1/pods/", {"template": mine["id"]}, format="json")
    assert refused.status_code == 400 and "template" in refused.json()["error"]["fields"]
    assert not Pod.objects.exists()


def test_bad_template_input_names_the_field(owner_client):
    for field, value in (
        ("volume_mount_path", "relative/path"),
        ("recommended_gpu_model", "GTX 9999"),
        ("slug", "not a slug"),
    ):
        response = owner_client.post(
            "/api/v1/pod-templates/", {**MINE, field: value}, format="json"
        )
        assert response.status_code == 400
        assert field in response.json()["error"]["fields"]
    assert not PodTemplate.objects.exists()
