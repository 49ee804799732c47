"""The heartbeat's lean path (apps/nodes/heartbeat_asgi.py), through the real ASGI application on
Postgres: it answers as the DRF view does, a silent node is caught by the liveness sweep within
3 intervals of its last lean beat and comes back ONLINE on the next, a retired token stops at
once, replays and changed containers go the full way, GPU readings arrive in batches, and a
beat that finds no free connection is shed with a 503 and a jittered Retry-After."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.test import TestCase

from apps.nodes.models import Gpu, Node, NodeCommand, NodeStatus, Workload
from apps.nodes.services import command_enqueue, node_retire, workload_start
from apps.nodes.sweep import nodes_sweep_liveness
from config.asgi import application, heartbeats
from tests.factories import heartbeat_body

# The lean path has its own connections: the data must be committed for them to see it.
pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/nodes/heartbeat"


class Beats:
    """Heartbeats of one node through the ASGI application, `seq` and `sent_at` as agents send."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.seq = 0

    def body(self, **overrides):
        self.seq += 1
        return heartbeat_body(seq=self.seq, sent_at=datetime.now(UTC).isoformat(), **overrides)


def post_all(requests):
    """POST each (token, body) in order through the ASGI app; the responses."""

    async def run():
        transport = httpx.ASGITransport(app=application)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return [
                    await c.post(URL, json=body, headers={"X-Agent-API-Key": token})
                    for token, body in requests
                ]
        finally:
            await heartbeats.aclose()  # writes the buffered telemetry, closes this loop's pool

    return asyncio.run(run())


def post(token, body):
    return post_all([(token, body)])[0]


def counted(fn):
    """Run `fn`; how many beats the lean path served and handed on meanwhile, and its result."""
    served, handed_on = heartbeats.served, heartbeats.handed_on
    result = fn()
    return heartbeats.served - served, heartbeats.handed_on - handed_on, result


def sweep(now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return nodes_sweep_liveness(now=now)


@pytest.fixture
def agent(registered):
    node_id, token = registered
    return Node.objects.get(pk=node_id), Beats(token)


def test_a_dead_node_is_suspect_within_3_intervals_of_its_last_lean_beat_and_comes_back(agent):
    node, beats = agent
    # given a node that heartbeats once through the lean path (the first beat of a REGISTERING
    # node goes the full way and makes it ONLINE), then dies
    post(beats.token, beats.body())
    served, handed_on, response = counted(lambda: post(beats.token, beats.body()))
    assert response.status_code == 200 and (served, handed_on) == (1, 0)
    node.refresh_from_db()
    last = node.last_heartbeat_at
    interval = timedelta(seconds=node.heartbeat_interval)

    # when the sweep runs every interval after its last beat
    results = {n: sweep(last + n * interval + timedelta(seconds=1)) for n in (1, 2, 3)}

    # then it is SUSPECT by the sweep 3 intervals after its last beat, not before
    assert results[1].suspect == [] and results[2].suspect == []
    assert results[3].suspect == [node.pk] and results[3].offline == []
    node.refresh_from_db()
    assert node.status == NodeStatus.SUSPECT

    # and its next beat (handed on to the full path) brings it back ONLINE, the one after is lean
    served, handed_on, responses = counted(
        lambda: post_all([(beats.token, beats.body()), (beats.token, beats.body())])
    )
    assert [r.status_code for r in responses] == [200, 200] and (served, handed_on) == (1, 1)
    node.refresh_from_db()
    assert node.status == NodeStatus.ONLINE and node.status_reason.startswith("heartbeat after")


def test_the_lean_answer_is_the_full_paths_answer(agent, api_client):
    node, beats = agent
    post(beats.token, beats.body())  # ONLINE
    pod = uuid.uuid4()
    workload_start(node=node, pod_id=pod, spec={"image": "busybox", "gpu_indices": [0]})
    command_enqueue(node=node, type="fetch_logs", payload={"pod_id": str(pod), "tail": 5})
    reported = [
        {
            "pod_id": str(pod),
            "container_id": "c0ffee",
            "state": "running",
            "exit_code": None,
            "started_at": "2026-11-26T10:00:00Z",
            "finished_at": None,
            "error": "",
        }
    ]

    # when the full path records the container, then the lean path and the view answer a beat
    full_first = post(beats.token, beats.body(containers=reported))
    served, _, lean = counted(lambda: post(beats.token, beats.body(containers=reported)))
    view = api_client.post(
        URL, beats.body(containers=reported), format="json", HTTP_X_AGENT_API_KEY=beats.token
    )

    # then the answers are the same JSON: two commands, oldest first, and the wanted pod
    assert full_first.status_code == lean.status_code == view.status_code == 200
    assert served == 1
    assert lean.headers["content-type"] == "application/json"
    assert lean.json() == view.json() == full_first.json()
    assert [c["type"] for c in lean.json()["commands"]] == ["start_pod", "fetch_logs"]
    assert lean.json()["wanted_pod_ids"] == [str(pod)]
    assert NodeCommand.objects.get(type="fetch_logs").deliveries == 3
    assert Workload.objects.get(pod_id=pod).container_id == "c0ffee"


def test_a_changed_container_goes_the_full_way_and_is_recorded(agent):
    node, beats = agent
    post(beats.token, beats.body())
    pod = uuid.uuid4()
    workload_start(node=node, pod_id=pod, spec={"image": "busybox"})
    exited = {
        "pod_id": str(pod),
        "container_id": "abc",
        "state": "exited",
        "exit_code": 3,
        "finished_at": "2026-11-26T11:00:00+00:00",
        "error": "",
    }

    served, handed_on, responses = counted(
        lambda: post_all(
            [(beats.token, beats.body(containers=[exited])), (beats.token, beats.body())]
        )
    )

    assert [r.status_code for r in responses] == [200, 200] and (served, handed_on) == (1, 1)
    workload = Workload.objects.get(pod_id=pod)
    assert (workload.state, workload.exit_code, workload.container_id) == ("exited", 3, "abc")


def test_gpu_readings_are_written_in_a_batch(agent):
    node, beats = agent
    post(beats.token, beats.body())
    gpus = heartbeat_body()["gpus"]
    gpus[0].update(utilization_pct=87.5, memory_used_mb=4242, power_w=301.0)

    served, _, response = counted(lambda: post(beats.token, beats.body(gpus=gpus)))

    assert response.status_code == 200 and served == 1
    gpu = Gpu.objects.get(node=node, index=0)
    assert (gpu.utilization_pct, gpu.memory_used_mb, gpu.power_w) == (87.5, 4242, 301.0)
    assert gpu.telemetry_at is not None


def test_a_retired_nodes_token_stops_at_its_next_beat(agent):
    node, beats = agent
    post(beats.token, beats.body())
    node_retire(node=Node.objects.get(pk=node.pk))

    response = post(beats.token, beats.body())

    assert response.status_code == 401
    assert response.json()["error"]["message"] == "Unknown or revoked node token; re-register."


def test_a_replayed_beat_is_refused_with_the_last_seq(agent):
    node, beats = agent
    post(beats.token, beats.body())
    body = beats.body()

    first, replay = post_all([(beats.token, body), (beats.token, body)])

    assert first.status_code == 200 and replay.status_code == 409
    error = replay.json()["error"]
    assert error["code"] == "heartbeat_replayed" and error["last_seq"] == body["seq"]


def test_invalid_telemetry_is_the_full_paths_400_naming_the_field(agent):
    node, beats = agent
    post(beats.token, beats.body())
    body = beats.body()
    body["gpus"][0]["utilization_pct"] = 180

    response = post(beats.token, body)

    assert response.status_code == 400
    assert "gpus[0].utilization_pct" in response.json()["error"]["fields"]


def test_a_beat_with_no_free_connection_is_shed_with_a_jittered_retry_after(agent, settings):
    node, beats = agent
    post(beats.token, beats.body())
    settings.NODE_HEARTBEAT_DB_CONNECTIONS = 1
    settings.WEB_QUEUE_TIMEOUT_S = 0.2
    before = Node.objects.get(pk=node.pk).last_heartbeat_seq

    async def run():
        transport = httpx.ASGITransport(app=application)
        pool = await heartbeats.pool()
        try:
            async with (
                pool.connection(),  # the one connection, held elsewhere
                httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
            ):
                return await client.post(
                    URL, json=beats.body(), headers={"X-Agent-API-Key": beats.token}
                )
        finally:
            await heartbeats.aclose()

    response = asyncio.run(run())

    assert response.status_code == 503 and response.json()["error"]["code"] == "overloaded"
    assert 1 <= int(response.headers["retry-after"]) <= node.heartbeat_interval
    assert Node.objects.get(pk=node.pk).last_heartbeat_seq == before


def test_beats_beyond_the_processs_bound_are_shed_before_anything_is_read(agent, settings):
    node, beats = agent
    post(beats.token, beats.body())
    settings.NODE_HEARTBEAT_MAX_WAITING = 0  # as if the process already had its fill in flight
    before = Node.objects.get(pk=node.pk).last_heartbeat_seq

    response = post(beats.token, beats.body())

    assert response.status_code == 503 and response.json()["error"]["code"] == "overloaded"
    assert 1 <= int(response.headers["retry-after"]) <= node.heartbeat_interval
    assert Node.objects.get(pk=node.pk).last_heartbeat_seq == before
