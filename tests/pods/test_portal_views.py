"""Portal pages for pods: the create form (live offers, the API's rules, idempotent submit),
list and detail with their polled fragments, stop, logs; owner / other tenant / anonymous."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.nodes.models import CommandType, NodeCommand
from apps.pods.models import Pod, PodStatus
from tests.factories import ack, fund, make_node

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(client, user):
    fund(user, 100_000_000)
    client.force_login(user)
    return client


def form(**overrides):
    data = {
        "name": "train",
        "image": "local/busybox:1",
        "command": "sleep 3600",
        "gpu_model": "RTX 4090",
        "gpu_count": "1",
        "price_cap_per_gpu_hour_usd": "",
        "idempotency_key": uuid.uuid4().hex,
    }
    data.update(overrides)
    return data


def test_create_form_shows_live_offers_from_the_scheduler_view(owner):
    make_node("a", gpus=2, price=690_000)
    make_node("b", gpus=1, price=500_000)

    page = owner.get("/pods/new/")
    offers = owner.get("/pods/offers.json").json()["offers"]

    assert page.status_code == 200
    assert b"data-price-form" in page.content and b'id="pod-offers"' in page.content
    gpu = next(o for o in offers if o["gpu_model"] == "RTX 4090")
    assert gpu == {
        "gpu_model": "RTX 4090",
        "vram_mb": 24564,
        "free_gpus": 3,
        "max_gpus_per_node": 2,
        "price_per_gpu_hour": 500_000,
        "source": "own",
        "provider_kind": "platform",
        "provider": "",
        "reliability": 1.0,
        "spot": False,
    }
    assert any(o["gpu_model"] == "CPU" for o in offers)


def test_submit_creates_and_places_the_pod_once(owner, user):
    node = make_node(price=690_000)
    data = form()

    first = owner.post("/pods/new/", data)
    again = owner.post("/pods/new/", data)  # a double click

    pod = Pod.objects.get(owner=user)
    assert first.status_code == 302 and first["Location"] == f"/pods/{pod.pk}/"
    assert again["Location"] == first["Location"]
    assert pod.status == PodStatus.SCHEDULED and pod.node == node
    assert pod.command == ["sleep", "3600"]
    assert NodeCommand.objects.filter(node=node, type=CommandType.START_POD).count() == 1


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"gpu_model": "CPU", "gpu_count": "1"}, "gpu_count", "gpu_count 0"),
        ({"gpu_model": "Potato 9000"}, "gpu_model", "Potato 9000"),
        ({"gpu_count": "9"}, "gpu_count", "less than or equal to 8"),
        ({"name": ""}, "name", "required"),
        ({"command": "echo 'unclosed"}, "command", "Cannot split"),
        ({"price_cap_per_gpu_hour_usd": "0.10"}, "price_cap_per_gpu_hour_usd", "below the lowest"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_creates_nothing(owner, change, field, message):
    make_node(price=690_000)

    response = owner.post("/pods/new/", form(**change))

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field])
    assert not Pod.objects.exists()


def test_no_balance_is_refused_with_the_reason(client, user):
    client.force_login(user)  # never funded
    make_node(price=690_000)

    response = client.post("/pods/new/", form())

    assert response.status_code == 400
    assert "top up" in " ".join(response.context["form"].non_field_errors())
    assert not Pod.objects.exists()


def test_list_and_detail_poll_while_the_pod_moves_and_stop_when_settled(owner, user):
    make_node(price=690_000)
    owner.post("/pods/new/", form())
    pod = Pod.objects.get(owner=user)

    listing = owner.get("/pods/")
    detail = owner.get(f"/pods/{pod.pk}/")
    fragment = owner.get(f"/pods/{pod.pk}/status")

    assert b"data-poll-url" in listing.content and b"SCHEDULED" in listing.content
    assert b'data-poll-url="/pods/%s/status"' % str(pod.pk).encode() in detail.content
    assert fragment.content.lstrip().startswith(b'<div id="pod-status"')
    assert b"<progress" in fragment.content

    stopped = owner.post(f"/pods/{pod.pk}/stop")
    assert stopped.status_code == 302
    pod.refresh_from_db()
    assert pod.status == PodStatus.STOPPING
    Pod.objects.filter(pk=pod.pk).update(status=PodStatus.STOPPED)
    settled = owner.get(f"/pods/{pod.pk}/status")
    assert b"data-poll-url" not in settled.content
    assert b"Stop pod" not in settled.content


def test_logs_are_requested_then_polled_until_the_node_answers(owner, user):
    node = make_node(price=690_000)
    owner.post("/pods/new/", form())
    pod = Pod.objects.get(owner=user)

    response = owner.post(f"/pods/{pod.pk}/logs")
    command = NodeCommand.objects.get(node=node, type=CommandType.FETCH_LOGS)
    assert response["Location"] == f"/pods/{pod.pk}/logs/{command.pk}"
    waiting = owner.get(response["Location"], HTTP_X_REQUESTED_WITH="fetch")
    assert b"data-poll-url" in waiting.content and b"Waiting" in waiting.content

    ack(node, command.pk, succeeded=True, result={"logs": "hello <b>world</b>\n"})
    done = owner.get(response["Location"], HTTP_X_REQUESTED_WITH="fetch")
    assert b"data-poll-url" not in done.content
    assert b"hello &lt;b&gt;world&lt;/b&gt;" in done.content  # escaped, never HTML


def test_other_tenant_gets_404_everywhere(owner, user, other_user):
    from django.test import Client

    client = Client()
    make_node(price=690_000)
    owner.post("/pods/new/", form(name="owners-only-pod"))
    pod = Pod.objects.get(owner=user)
    client.force_login(other_user)

    for path in (f"/pods/{pod.pk}/", f"/pods/{pod.pk}/status"):
        assert client.get(path).status_code == 404
    assert client.post(f"/pods/{pod.pk}/stop").status_code == 404
    assert client.post(f"/pods/{pod.pk}/logs").status_code == 404
    assert pod.name.encode() not in client.get("/pods/").content
    pod.refresh_from_db()
    assert pod.status == PodStatus.SCHEDULED


def test_anonymous_is_sent_to_log_in(client):
    for path in ("/pods/", "/pods/new/", "/pods/offers.json", f"/pods/{uuid.uuid4()}/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_list_queries_do_not_grow_with_pods(owner, user):
    make_node(gpus=8, price=690_000)
    owner.post("/pods/new/", form())
    with CaptureQueriesContext(connection) as one:
        owner.get("/pods/")
    for _ in range(5):
        owner.post("/pods/new/", form())
    with CaptureQueriesContext(connection) as six:
        owner.get("/pods/")
    assert Pod.objects.filter(owner=user).count() == 6
    assert len(six) == len(one)


def test_env_and_ports_reach_the_pod_and_bad_ones_name_the_field(owner, user):
    make_node(price=690_000)

    bad_env = owner.post("/pods/new/", form(env="NO_EQUALS_SIGN"))
    bad_name = owner.post("/pods/new/", form(env="1BAD=x"))
    bad_port = owner.post("/pods/new/", form(ports="80, 70000"))
    good = owner.post("/pods/new/", form(env="MODE=train\nEMPTY=\n", ports="8888, 53/udp"))

    assert bad_env.status_code == 400 and "env" in bad_env.context["form"].errors
    assert bad_name.status_code == 400 and "1BAD" in " ".join(
        bad_name.context["form"].errors["env"]
    )
    assert bad_port.status_code == 400 and "ports" in bad_port.context["form"].errors
    pod = Pod.objects.get(owner=user)
    assert good.status_code == 302
    assert pod.env == {"MODE": "train", "EMPTY": ""}
    assert pod.ports == [
        {"container_port": 8888, "protocol": "tcp"},
        {"container_port": 53, "protocol": "udp"},
    ]


def test_remove_hides_a_stopped_pod_and_stops_a_running_one_first(owner, user):
    make_node(price=690_000)
    owner.post("/pods/new/", form(name="short-lived"))
    pod = Pod.objects.get(owner=user)

    first = owner.post(f"/pods/{pod.pk}/remove")  # still on its node: stop first
    pod.refresh_from_db()
    assert first["Location"] == f"/pods/{pod.pk}/" and pod.status == PodStatus.STOPPING
    Pod.objects.filter(pk=pod.pk).update(status=PodStatus.STOPPED)

    second = owner.post(f"/pods/{pod.pk}/remove")
    pod.refresh_from_db()
    assert second["Location"] == "/pods/" and pod.status == PodStatus.TERMINATED
    listing = owner.get("/pods/").content
    assert b"Removed short-lived" in listing  # the message, once
    assert f'data-pod="{pod.pk}"'.encode() not in listing


def test_not_found_is_a_page_for_people_and_json_for_the_api(owner):
    page = owner.get(f"/pods/{uuid.uuid4()}/")
    api = owner.get(f"/api/v1/pods/{uuid.uuid4()}")
    assert page.status_code == 404 and b"<h1>Not found</h1>" in page.content
    assert api.status_code == 404 and api.json()["error"]["status"] == 404


def test_detail_shows_the_telemetry_of_the_pods_own_gpus_only(owner, user):
    from apps.nodes import services as node_services

    node = make_node(gpus=2, price=690_000)
    owner.post("/pods/new/", form())
    pod = Pod.objects.get(owner=user)
    assert pod.gpu_indices == [0]
    node_services.node_heartbeat(
        node=node,
        gpus=[
            {"index": 0, "utilization_pct": 41.0, "memory_used_mb": 100, "temperature_c": 50.0},
            {"index": 1, "utilization_pct": 99.0, "memory_used_mb": 200, "temperature_c": 80.0},
        ],
        system={},
        containers=[],
    )

    page = owner.get(f"/pods/{pod.pk}/status").content.decode()

    assert 'value="41"' in page and "50 °C" in page
    assert 'value="99"' not in page and "80 °C" not in page  # another tenant's GPU


def test_list_shows_active_pods_only_when_asked(owner, user):
    make_node(price=690_000)
    owner.post("/pods/new/", form(name="still-running"))
    owner.post("/pods/new/", form(name="long-gone"))
    Pod.objects.filter(name="long-gone").update(status=PodStatus.STOPPED)

    everything = owner.get("/pods/").content
    active = owner.get("/pods/", {"scope": "active"}).content

    assert b"still-running" in everything and b"long-gone" in everything
    assert b"still-running" in active and b"long-gone" not in active
    assert b"/pods/table?scope=active" in active  # the polled fragment keeps the scope


def test_landing_page_lists_free_gpus_and_prices(client):
    from django.core.cache import cache

    make_node("a", gpus=2, price=690_000)
    cache.clear()

    page = client.get("/")

    assert page.status_code == 200
    assert b"Available now" in page.content
    assert b"RTX 4090" in page.content and b"$0.69/GPU-h" in page.content
