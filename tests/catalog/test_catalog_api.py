import pytest
from django.test import TestCase

from apps.catalog.models import Deployment, DeploymentKey, ModelUsageLog, ReplicaStatus
from apps.core.secrets import secret_digest
from apps.pods.models import Pod, PodStatus

pytestmark = pytest.mark.django_db


def test_catalog_lists_and_filters_without_login(api_client, catalog):
    everything = api_client.get("/api/v1/models").json()
    embeddings = api_client.get("/api/v1/models", {"category": "embedding"}).json()
    small = api_client.get("/api/v1/models", {"capability": "chat", "max_vram_gb": 16}).json()
    searched = api_client.get("/api/v1/models", {"search": "llama"}).json()

    assert len(everything) >= 20
    assert {t["slug"] for t in embeddings} == {"bge-large-en-v1.5", "local-all-minilm-l6-v2"}
    assert all(t["min_vram_gb"] <= 16 and "chat" in t["capabilities"] for t in small)
    assert "mistral-7b-instruct-v0.3" in {t["slug"] for t in small}
    assert {t["slug"] for t in searched} >= {"llama-3.1-8b-instruct", "llama-3.1-70b-instruct"}


def test_bad_filter_names_the_field(api_client, catalog):
    response = api_client.get("/api/v1/models", {"category": "video"})

    assert response.status_code == 400
    assert "category" in response.json()["error"]["fields"]


def test_detail_by_slug(api_client, catalog):
    body = api_client.get("/api/v1/models/llama-3.1-8b-instruct").json()

    assert body["image"].startswith("vllm/vllm-openai:")
    assert body["recommended_gpu"] == "RTX 4090"
    assert api_client.get("/api/v1/models/no-such-model").status_code == 404


def test_deploy_creates_replica_pods_and_shows_the_key_once(owner_client, catalog, gpu_node):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = owner_client.post(
            "/api/v1/models/llama-3.1-8b-instruct/deploy",
            {"replicas": 2, "model_name": "my-llama", "overrides": {"env": {"HF_TOKEN": "t"}}},
            format="json",
        )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["api_key"].startswith("sk_")
    assert body["status"] == "PROVISIONING"
    assert [r["pod_status"] for r in body["replica_set"]] == ["SCHEDULED", "SCHEDULED"]
    deployment = Deployment.objects.get(pk=body["id"])
    key = DeploymentKey.objects.get(deployment=deployment)
    assert key.digest == secret_digest(body["api_key"])  # stored hashed only
    pods = Pod.objects.filter(replica__deployment=deployment)
    assert {p.image for p in pods} == {deployment.image}
    assert all(p.gpu_model == "RTX 4090" and p.gpu_count == 1 for p in pods)
    assert all("my-llama" in p.command and p.env["HF_TOKEN"] == "t" for p in pods)
    detail = owner_client.get(f"/api/v1/models/deployments/{deployment.pk}").json()
    assert "api_key" not in detail
    assert detail["keys"][0]["prefix"] == body["api_key"][:11]


def test_deploy_validates_input(owner_client, catalog):
    response = owner_client.post(
        "/api/v1/models/llama-3.1-8b-instruct/deploy",
        {"replicas": 0, "gpu_model": "TPU v9"},
        format="json",
    )

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"replicas", "gpu_model"}
    assert not Deployment.objects.exists()


def test_deploy_without_balance_is_402_and_makes_nothing(api_client, user, catalog, gpu_node):
    api_client.force_authenticate(user)

    response = api_client.post("/api/v1/models/llama-3.1-8b-instruct/deploy", {}, format="json")

    assert response.status_code == 402
    assert not Deployment.objects.exists()


def test_anonymous_cannot_deploy_or_list(api_client, catalog):
    assert api_client.post("/api/v1/models/local-echo-test/deploy", {}).status_code == 401
    assert api_client.get("/api/v1/models/deployments").status_code == 401


def _deploy(client, slug="local-echo-test", **body):
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(f"/api/v1/models/{slug}/deploy", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_other_tenant_gets_404_on_every_deployment_route(
    owner_client, other_client, catalog, cpu_node
):
    deployment = _deploy(owner_client)
    base = f"/api/v1/models/deployments/{deployment['id']}"

    assert other_client.get(base).status_code == 404
    assert other_client.get(base + "/metrics").status_code == 404
    assert other_client.get(base + "/events").status_code == 404
    assert other_client.post(base + "/keys/rotate").status_code == 404
    assert other_client.delete(base).status_code == 404
    assert other_client.get("/api/v1/models/deployments").json() == []
    assert Deployment.objects.get(pk=deployment["id"]).status != "STOPPED"


def test_delete_stops_the_deployment_and_its_pods(owner_client, catalog, cpu_node):
    deployment = _deploy(owner_client, replicas=2)

    with TestCase.captureOnCommitCallbacks(execute=True):
        response = owner_client.delete(f"/api/v1/models/deployments/{deployment['id']}")

    assert response.status_code == 200
    assert response.json()["status"] == "STOPPED"
    assert {r["status"] for r in response.json()["replica_set"]} == {ReplicaStatus.STOPPED}
    pods = Pod.objects.filter(replica__deployment_id=deployment["id"])
    assert {p.status for p in pods} == {PodStatus.STOPPING}


def test_rotate_key_revokes_the_old_one(owner_client, catalog, cpu_node):
    deployment = _deploy(owner_client)

    response = owner_client.post(f"/api/v1/models/deployments/{deployment['id']}/keys/rotate")

    assert response.status_code == 201
    new_raw = response.json()["api_key"]
    keys = DeploymentKey.objects.filter(deployment_id=deployment["id"])
    assert [k.digest for k in keys if k.revoked_at is None] == [secret_digest(new_raw)]
    assert keys.get(digest=secret_digest(deployment["api_key"])).revoked_at is not None


def test_metrics_from_the_usage_log_and_node_telemetry(owner_client, catalog, gpu_node):
    from django.utils import timezone

    from apps.nodes import services as node_services

    deployment = _deploy(owner_client, slug="qwen2.5-7b-instruct")
    pod = Pod.objects.get(replica__deployment_id=deployment["id"])
    node_services.node_heartbeat(
        node=gpu_node,
        gpus=[
            {"index": i, "utilization_pct": 40.0 + 20 * i, "memory_used_mb": 1000} for i in range(2)
        ],
        system={},
        containers=[],
    )
    now = timezone.now()
    ModelUsageLog.objects.bulk_create(
        [
            ModelUsageLog(
                deployment_id=deployment["id"],
                at=now,
                endpoint="chat/completions",
                status_code=200 if i < 9 else 503,
                latency_ms=float(10 * (i + 1)),
                first_byte_ms=5.0,
                prompt_tokens=3,
                completion_tokens=7,
            )
            for i in range(10)
        ]
    )

    body = owner_client.get(
        f"/api/v1/models/deployments/{deployment['id']}/metrics", {"window": 100}
    ).json()

    assert body["requests"] == 10 and body["requests_per_s"] == 0.1
    assert body["errors"] == 1 and body["error_rate"] == 0.1
    assert body["latency_ms"] == {"p50": 50.0, "p95": 100.0}
    assert body["tokens"] == {"prompt": 30, "completion": 70}
    assert [g["index"] for g in body["gpu"]["gpus"]] == pod.gpu_indices
    assert body["gpu"]["utilization_pct_avg"] is not None


def test_metrics_window_is_validated(owner_client, catalog, cpu_node):
    deployment = _deploy(owner_client)

    response = owner_client.get(
        f"/api/v1/models/deployments/{deployment['id']}/metrics", {"window": "forever"}
    )

    assert response.status_code == 400
    assert "window" in response.json()["error"]["fields"]


def test_deploy_refuses_a_gpu_too_small_for_the_model(owner_client, catalog):
    response = owner_client.post(
        "/api/v1/models/llama-3.1-70b-instruct/deploy", {"gpu_model": "RTX 4090"}, format="json"
    )

    assert response.status_code == 400
    assert "needs at least 80 GB" in response.json()["error"]["fields"]["gpu_model"]
    assert not Deployment.objects.exists()
