"""One pod start followed by its request id, from the API call to the container: the client's
X-Request-ID is on the web's JSON access line; the pod waits (its only node is drained), and a
real Celery worker's scheduler pass, published as beat publishes it (with no request id of its
own), places it under that id; the start_pod command carries it, and the real agent process
writes it on its lines for that command. Every line is parsed as JSON."""

import json
import uuid

import httpx
import pytest
from celery.contrib.testing.worker import start_worker

from apps.accounts.services import api_key_create
from apps.nodes.models import Node, NodeCommand, NodeStatus
from apps.nodes.operator_actions import node_drain, node_undrain
from apps.pods.models import Pod, PodStatus
from apps.pods.tasks import schedule_pending_pods
from config.celery import app as celery_app
from tests.factories import fund
from tests.support import capturing, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def test_pod_start_id_goes_web_then_celery_then_agent(
    agent_env, live_server, settings, monkeypatch, user, busybox_image, cleanup_containers
):
    settings.LOG_ACCESS = True
    assert celery_app.conf.broker_url.startswith("redis://"), "needs REDIS_URL"
    agent = agent_env()
    node = wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "node ONLINE")
    fund(user, 10_000_000)
    key = api_key_create(user=user, name="rid").raw_key
    rid = f"e2e-{uuid.uuid4().hex}"

    # Given the only node drained, so the API call cannot place the pod itself
    node_drain(node=node)
    with capturing() as web_logs:
        created = httpx.post(
            f"{live_server.url}/api/v1/pods/",
            json={
                "name": "rid",
                "image": busybox_image,
                "command": ["sleep", "300"],
                "gpu_model": "CPU",
                "gpu_count": 0,
            },
            headers={"Authorization": f"Bearer {key}", "X-Request-ID": rid},
            timeout=30,
        )
    assert created.status_code == 201, created.text
    assert created.headers["X-Request-ID"] == rid
    assert created.json()["status"] == PodStatus.PENDING
    pod_id = created.json()["id"]
    access = [
        r
        for r in web_logs.records()
        if r["logger"] == "gco.access" and r["route"] == "/api/v1/pods/"
    ]
    assert [r["request_id"] for r in access] == [rid]
    assert not NodeCommand.objects.filter(type="start_pod").exists()

    # When the node is back and a worker runs the periodic scheduler pass
    node_undrain(node=node)
    monkeypatch.setitem(celery_app.conf, "worker_hijack_root_logger", False)
    with (
        start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="INFO"),
        capturing() as worker_logs,  # after the worker's start-up has configured logging
    ):
        schedule_pending_pods.delay()  # outside any request, as beat publishes it
        # The task's "succeeded" line comes after its work is committed: wait for it while
        # the worker runs (the pod's change is seen first).
        trace = wait_for(
            lambda: [r for r in worker_logs.records() if r["logger"] == "celery.app.trace"],
            "the task's trace line",
            timeout=30,
        )

    # Then the worker's placement line, written inside the task, carries the pod's request id
    placed = [
        r
        for r in worker_logs.records()
        if r.get("pod_id") == pod_id and r.get("task") == "pods.schedule_pending"
    ]
    assert placed, worker_logs.stream.getvalue()[-2000:]
    assert {r["request_id"] for r in placed} == {rid}
    assert {r["pod_status"] for r in placed} == {PodStatus.SCHEDULED}
    # the task's own lines do not (beat's pass serves no request)
    assert {r["request_id"] for r in trace} == {None}
    # and so does the start_pod command the task queued
    command = NodeCommand.objects.get(type="start_pod", payload__pod_id=pod_id)
    assert command.payload["request_id"] == rid

    # and the agent's lines for that command
    wait_for(lambda: Pod.objects.get(pk=pod_id).status == PodStatus.RUNNING, "pod RUNNING")

    def agent_lines() -> list[dict]:
        lines = []
        for raw in agent.output().splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # a partly written last line
        return [line for line in lines if line.get("command_id") == str(command.pk)]

    lines = wait_for(
        lambda: (
            (found := agent_lines())
            and {"command.accepted", "command.finished"} <= {x["event"] for x in found}
            and found
        ),
        "the agent's command lines",
    )
    assert {line["request_id"] for line in lines} == {rid}
    agent.stop()
