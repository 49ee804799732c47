"""`/metrics` during a scripted run against the real ASGI app (uvicorn, in this process, on the
test database): a node registers and heartbeats, a pod starts and runs, the billing task bills
it, a model request is proxied to a real echo backend. Each series must move by exactly what
the run did; without the scrape token the endpoint answers 403, unconfigured it answers 404."""

import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db.models import Sum
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.accounts.services import api_key_create
from apps.catalog.models import ModelUsageLog
from apps.pods.models import Pod, PodStatus, UsageRecord
from apps.pods.tasks import bill_running_pods
from apps.proxy.routing import usage_buffer
from tests.factories import BOOTSTRAP, fund, h100_registration, heartbeat_body, make_deployment
from tests.proxy.conftest import echo_backends, proxy_server  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-scrape-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def scrape_token(settings):
    settings.METRICS_TOKEN_SHA256 = hashlib.sha256(TOKEN.encode()).hexdigest()
    settings.METRICS_LEDGER_CHECK_S = 0
    settings.NODE_BOOTSTRAP_TOKEN = BOOTSTRAP
    return TOKEN


def test_unconfigured_metrics_do_not_exist(client, settings):
    settings.METRICS_TOKEN_SHA256 = ""
    settings.METRICS_ALLOWED_NETWORKS = []
    assert client.get("/metrics").status_code == 404


def test_metrics_need_the_token(client, scrape_token):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    ok = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scrape_token}")
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain")


def test_allowed_network_alone_admits_and_refuses(client, settings):
    settings.METRICS_TOKEN_SHA256 = ""
    settings.METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert client.get("/metrics").status_code == 403  # the test client is 127.0.0.1
    settings.METRICS_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200


def test_scripted_run_moves_every_series(
    proxy_server,  # noqa: F811
    echo_backends,  # noqa: F811
    scrape_token,
    user,
):
    web = httpx.Client(base_url=proxy_server.url, timeout=30)

    def scrape() -> Samples:
        response = web.get("/metrics", headers={"Authorization": f"Bearer {scrape_token}"})
        assert response.status_code == 200, response.text
        return parse(response.text)

    assert web.get("/metrics").status_code == 403
    before = scrape()

    # Given a node that registers and heartbeats twice over the API
    registered = web.post("/api/v1/nodes/register", json=h100_registration())
    assert registered.status_code == 201, registered.text
    agent = {"X-Agent-API-Key": registered.json()["node_token"]}
    for _ in range(2):
        assert web.post("/api/v1/nodes/heartbeat", json=heartbeat_body(), headers=agent).is_success

    # When a funded user starts a pod, which the node runs
    fund(user, 50_000_000)
    key = api_key_create(user=user, name="metrics").raw_key
    created = web.post(
        "/api/v1/pods/",
        json={"name": "m", "image": "busybox", "gpu_model": "CPU", "gpu_count": 0},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert created.status_code == 201, created.text
    pod_id = created.json()["id"]
    running = {
        "pod_id": pod_id,
        "container_id": "c" * 12,
        "state": "running",
        "exit_code": None,
        "started_at": timezone.now().isoformat(),
        "finished_at": None,
        "error": "",
    }
    beat = web.post(
        "/api/v1/nodes/heartbeat", json=heartbeat_body(containers=[running]), headers=agent
    )
    assert beat.is_success, beat.text
    wait_for(lambda: Pod.objects.get(pk=pod_id).status == PodStatus.RUNNING, "pod RUNNING")

    # and the billing task bills its last 30 s
    pod = Pod.objects.select_related("node").get(pk=pod_id)
    Pod.objects.filter(pk=pod_id).update(
        billed_until=pod.node.last_heartbeat_at - timedelta(seconds=30)
    )
    bill_running_pods.apply()
    charged = UsageRecord.objects.filter(pod_id=pod_id).aggregate(s=Sum("amount"))["s"]
    assert charged > 0

    # and a streamed chat completion goes through the proxy
    _, deployment_key = make_deployment(user, backends=[echo_backends()])
    with web.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "echo-model",
            "stream": True,
            "messages": [{"role": "user", "content": "a b c"}],
        },
        headers={"Authorization": f"Bearer {deployment_key}"},
    ) as streamed:
        assert streamed.status_code == 200
        assert len(streamed.headers["X-Request-ID"]) == 32  # /v1 answers with its id too
        "".join(streamed.iter_text())

    # Then every series moved by what the run did
    chat = {"endpoint": "chat/completions"}
    after = wait_for(
        lambda: (
            (s := scrape())
            and value(s, "gco_proxy_request_duration_seconds_count", status="200", **chat)
            > value(before, "gco_proxy_request_duration_seconds_count", status="200", **chat)
            and s
        ),
        "the proxied request's metrics",
    )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # web requests by resolved route, with latency
    pods_route = {"method": "POST", "route": "/api/v1/pods/"}
    assert delta("gco_http_requests_total", status="201", **pods_route) == 1
    assert delta("gco_http_request_duration_seconds_count", **pods_route) == 1
    heartbeat_route = {"method": "POST", "route": "/api/v1/nodes/heartbeat"}
    assert delta("gco_http_requests_total", status="200", **heartbeat_route) == 3
    # heartbeats and nodes by state
    assert delta("gco_node_heartbeats_received_total") == 3
    assert value(after, "gco_nodes", status="ONLINE") == 1
    # the scheduler and pods
    assert delta("gco_scheduler_placements_total") == 1
    assert value(after, "gco_pods", status="RUNNING") == 1
    assert value(after, "gco_pods_pending") == 0
    # the billing tick
    assert delta("gco_celery_task_duration_seconds_count", task="pods.bill_running") == 1
    assert delta("gco_celery_tasks_total", task="pods.bill_running", outcome="success") == 1
    assert delta("gco_billing_charged_microdollars_total") == charged
    # the ledger balances; no payouts in this run
    assert value(after, "gco_ledger_imbalance_microdollars") == 0
    assert value(after, "gco_ledger_balanced") == 1
    assert value(after, "gco_payouts", status="REQUESTED") == 0
    # the proxy: one request, its time to first token, its tokens, its own added latency
    usage_buffer.flush_sync()
    log = wait_for(lambda: ModelUsageLog.objects.first(), "the usage row")
    assert delta("gco_proxy_request_duration_seconds_count", status="200", **chat) == 1
    assert delta("gco_proxy_time_to_first_token_seconds_count", **chat) == 1
    assert delta("gco_proxy_tokens_total", kind="completion", **chat) == log.completion_tokens > 0
    assert delta("gco_proxy_added_latency_seconds_count") == 1
    assert delta("gco_proxy_added_latency_seconds_sum") > 0


def test_dashboard_names_only_exported_series(client, scrape_token):
    """Every series docs/grafana-dashboard.json queries is one /metrics exports."""
    dashboard = (ROOT / "docs" / "grafana-dashboard.json").read_text()
    text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scrape_token}").content.decode()
    exported = set()
    for family in text_string_to_metric_families(text):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_count", "_sum"),
        }.get(family.type, ("",))
        exported |= {family.name + suffix for suffix in suffixes}
    json.loads(dashboard)  # valid JSON
    queried = set(re.findall(r"gco_[a-z_]+", dashboard))
    assert queried and queried <= exported, queried - exported


def test_unknown_methods_share_one_series(client, scrape_token):
    """A client cannot mint series with made-up method names."""

    def count() -> float:
        text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {scrape_token}").content
        return value(
            parse(text.decode()),
            "gco_http_requests_total",
            method="OTHER",
            route="/healthz",
            status="200",
        )

    before = count()
    for method in ("BREW", "WHEN", "XYZZY"):
        client.generic(method, "/healthz")
    assert count() - before == 3
