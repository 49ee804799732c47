"""Container clouds end to end (Vast.ai, RunPod), nothing of ours replaced: a pod asks for a
GPU that only an upstream cloud has → the rental *is* the pod: the simulator starts the pod's
own image on the real Docker engine with its command, env and port → the provisioning tick
(the poll) sees it running → its port answers on 127.0.0.1 → its logs come from the provider
(Vast) or the API says why not (RunPod) → it is billed at upstream × markup → stopping it
terminates it upstream. No agent and no node are involved.

Spot: the cloud kills a running spot container → one poll later the pod is INTERRUPTED,
billing ended at the last time the provider reported it running, the owner got an email, and
with `restart: on-interruption` it runs again on another rental."""

import socket
import time
from datetime import timedelta

import httpx
import pytest
from django.core import mail
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.services import api_key_create
from apps.billing.services import wallet_credit
from apps.core.money import prorate
from apps.nodes.models import Node
from apps.pods.metering import meter_tick
from apps.pods.models import Pod, PodEvent, PodStatus, UsageRecord
from apps.sourcing import offer_book, services
from apps.sourcing.models import InstanceStatus, ProvisionedInstance, UpstreamCharge
from tests.e2e.upstream_conftest import net_image  # noqa: F401 - the fixture
from tests.sourcing.conftest import sims, simulators, sourcing  # noqa: F401 - fixtures
from tests.support import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]

GPU = "RTX 4090"
CONTAINER_CLOUDS = ["vast_ai", "runpod"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(port: int) -> list[str]:
    """Print to the log, then serve one page on `port` (busybox httpd in the foreground)."""
    return [
        "sh",
        "-c",
        f'echo "hello from $GREETING"; mkdir -p /www; echo "pong $GREETING" > /www/index.html; '
        f"exec httpd -f -v -p {port} -h /www",
    ]


def _setup(provider, sourcing, settings, user, django_user_model, live_server):  # noqa: F811
    settings.SOURCING_PROVIDERS = {provider: settings.SOURCING_PROVIDERS[provider]}
    sourcing[provider].control.reset(offers=400, seed=5)
    sourcing[provider].control.configure(boot_seconds=0.3)
    operator = django_user_model.objects.create_user(
        email="op@example.com", password="x-pass-12345", is_staff=True
    )
    wallet_credit(
        user=user, amount=50_000_000, reason="e2e", operator=operator, idempotency_key="e2e-credit"
    )
    key = api_key_create(user=user, name="e2e").raw_key
    offer_book.offer_book_refresh()
    return httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def tick_until(check, what: str, timeout: float = 90):
    """Run the provisioning tick (the poll) until `check()` holds."""

    def step():
        services.provisioning_tick()
        return check()

    return wait_for(step, what, timeout=timeout)


@pytest.mark.parametrize("provider", CONTAINER_CLOUDS)
def test_pod_is_the_upstream_container(
    provider,
    sourcing,  # noqa: F811 - the fixture
    settings,
    live_server,
    user,
    django_user_model,
    net_image,  # noqa: F811 - the fixture
    capsys,
):
    api = _setup(provider, sourcing, settings, user, django_user_model, live_server)
    port = free_port()
    requested = time.monotonic()
    created = api.post(
        "/api/v1/pods/",
        json={
            "name": "container-e2e",
            "image": net_image,
            "command": serve_command(port),
            "env": {"GREETING": f"{provider}-pod"},
            "ports": [{"container_port": port}],
            "gpu_model": GPU,
            "gpu_count": 1,
            "cloud": "upstream",
            "strategy": "LOWEST_PRICE",
        },
    )
    assert created.status_code == 201, created.text
    pod_id = created.json()["id"]
    pod = tick_until(
        lambda: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING).first(), "pod RUNNING"
    )
    to_running = time.monotonic() - requested
    with capsys.disabled():
        print(f"\n[{provider}] request → RUNNING: {to_running:.2f} s")  # noqa: T201

    # the rental is the pod: the customer's image, command and env, no agent, no node
    instance = ProvisionedInstance.objects.get(pod_id=pod_id)
    assert instance.provider == provider and instance.execution_model == "container"
    assert instance.status == InstanceStatus.ACTIVE
    upstream = next(
        i for i in sourcing[provider].control.instances() if i["label"] == instance.label
    )
    assert upstream["image"] == net_image and upstream["command"] == serve_command(port)
    assert upstream["env"]["GREETING"] == f"{provider}-pod"
    assert upstream["container"] == "running" and not upstream["process_alive"]
    assert not Node.objects.exists()

    # its port answers where the provider's port mapping says
    endpoint = pod.endpoints[f"{port}/tcp"]
    assert endpoint == f"127.0.0.1:{port}"
    page = wait_for(
        lambda: _get(f"http://{endpoint}/"), f"the pod's port {port} to answer", timeout=30
    )
    assert page == f"pong {provider}-pod\n"

    # logs: from the provider, or why not in words
    logs = api.get(f"/api/v1/pods/{pod_id}/logs", params={"tail": 50})
    assert logs.status_code == 200, logs.text
    if provider == "vast_ai":
        assert f"hello from {provider}-pod" in logs.json()["logs"]
        assert logs.json()["unavailable"] is None
    else:
        assert logs.json()["logs"] is None
        assert "no API for its logs" in logs.json()["unavailable"]
        assert "runpod" not in logs.json()["unavailable"].lower()

    # our price: upstream per GPU × 1.25, rounded up to the micro-dollar
    upstream_per_gpu = -(-instance.upstream_price_per_hour // instance.gpu_count)
    assert pod.price_per_gpu_hour == instance.price_per_gpu_hour
    assert pod.price_per_gpu_hour == -(-upstream_per_gpu * 125 // 100)

    # billed from RUNNING, never past the provider's last "running" report
    started = pod.started_at
    tick_until(
        lambda: (Pod.objects.get(pk=pod_id).upstream_seen_at - started) >= timedelta(seconds=2),
        "a later poll",
    )
    assert meter_tick(now=timezone.now()).records == 1
    record = UsageRecord.objects.get(pod_id=pod_id)
    assert record.node_id is None and record.price_per_gpu_hour == pod.price_per_gpu_hour
    assert record.period_end <= Pod.objects.get(pk=pod_id).upstream_seen_at

    # stop → terminated upstream → STOPPED
    stopped = api.post(f"/api/v1/pods/{pod_id}/stop")
    assert stopped.json()["status"] == "STOPPING"
    tick_until(
        lambda: Pod.objects.get(pk=pod_id).status == PodStatus.STOPPED, "pod STOPPED", timeout=30
    )
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.TERMINATED, instance.status_reason
    upstream = next(
        i for i in sourcing[provider].control.instances() if i["label"] == instance.label
    )
    assert upstream["terminated"]
    wait_for(lambda: _get(f"http://{endpoint}/") is None, "the port to close", timeout=30)
    assert UpstreamCharge.objects.filter(instance=instance, pod_id=pod_id).exists()


@pytest.mark.parametrize("provider", CONTAINER_CLOUDS)
def test_killed_spot_container_is_interrupted_and_placed_again(
    provider,
    sourcing,  # noqa: F811 - the fixture
    settings,
    live_server,
    user,
    django_user_model,
    net_image,  # noqa: F811 - the fixture
    capsys,
):
    api = _setup(provider, sourcing, settings, user, django_user_model, live_server)
    port = free_port()
    requested = time.monotonic()
    created = api.post(
        "/api/v1/pods/",
        json={
            "name": "spot-e2e",
            "image": net_image,
            "command": serve_command(port),
            "env": {"GREETING": "spot"},
            "ports": [{"container_port": port}],
            "gpu_model": GPU,
            "gpu_count": 1,
            "interruptible": True,
            "bid_cap_per_gpu_hour_usd": "5.00",
            "restart": "on-interruption",
        },
    )
    assert created.status_code == 201, created.text
    pod_id = created.json()["id"]
    pod = tick_until(
        lambda: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING).first(), "pod RUNNING"
    )
    to_running = time.monotonic() - requested
    first = ProvisionedInstance.objects.get(pod_id=pod_id)
    assert first.spot and first.execution_model == "container"
    started = pod.started_at
    tick_until(
        lambda: (Pod.objects.get(pk=pod_id).upstream_seen_at - started) >= timedelta(seconds=2),
        "a later poll",
    )
    meter_tick(now=timezone.now())
    seen = Pod.objects.get(pk=pod_id).upstream_seen_at

    # the cloud takes it back; the next poll notices
    sourcing[provider].control.preempt(first.provider_instance_id)
    killed = time.monotonic()
    services.provisioning_tick()  # one poll
    interrupted = PodEvent.objects.filter(pod_id=pod_id, to_status=PodStatus.INTERRUPTED).get()
    assert "interrupted" in interrupted.reason
    first.refresh_from_db()
    assert first.status == InstanceStatus.TERMINATED

    # billing ended at the interruption: the last "running" report, to the micro-dollar
    records = list(UsageRecord.objects.filter(pod_id=pod_id).order_by("period_start"))
    assert records and records[-1].period_end <= seen
    assert seen - records[-1].period_end < timedelta(seconds=1)
    rate = pod.price_per_gpu_hour * pod.gpu_count
    assert sum(r.amount for r in records) == sum(
        prorate(per_hour=rate, seconds=r.seconds) for r in records
    )
    assert records[0].period_start == started
    assert UsageRecord.objects.filter(pod_id=pod_id).aggregate(s=Sum("seconds"))["s"] == int(
        (records[-1].period_end - started).total_seconds()
    )
    assert any("interrupted" in m.subject for m in mail.outbox)
    assert mail.outbox[-1].to == [user.email]

    # restart: on-interruption → placed again on another rental, running again
    again = tick_until(
        lambda: Pod.objects.filter(pk=pod_id, status=PodStatus.RUNNING).first(),
        "the pod RUNNING again",
    )
    with capsys.disabled():
        print(  # noqa: T201
            f"\n[{provider} spot] request → RUNNING: {to_running:.2f} s; "
            f"killed → RUNNING again elsewhere: {time.monotonic() - killed:.2f} s"
        )
    second = ProvisionedInstance.objects.filter(pod_id=pod_id).exclude(pk=first.pk).get()
    assert second.provider_instance_id != first.provider_instance_id
    if provider == "vast_ai":  # a marketplace: another machine's offer (RunPod picks for us)
        assert second.offer_id != first.offer_id
    assert second.status == InstanceStatus.ACTIVE and again.interruptions == 1
    assert UsageRecord.objects.filter(
        pod_id=pod_id, period_start__lt=again.started_at
    ).count() == len(records)
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/") == "pong spot\n", "the port again", 30)
    api.post(f"/api/v1/pods/{pod_id}/stop")
    tick_until(lambda: Pod.objects.get(pk=pod_id).status == PodStatus.STOPPED, "stopped", 30)


def _get(url: str) -> str | None:
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return answer.text if answer.status_code == 200 else None
