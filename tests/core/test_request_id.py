"""The request id: taken from X-Request-ID (or made up), answered back, written on the web's
JSON log line, carried in a Celery message header to the task that runs on a real worker (over
the real Redis broker), and put in the payload of the agent commands that task queues. Log
lines are rendered by the JSON formatter LOG_FORMAT=json configures and parsed back."""

import uuid
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker

from apps.core import request_context
from apps.nodes.models import NodeCommand
from apps.pods.models import Pod, PodStatus
from apps.pods.tasks import schedule_pending_pods
from config.celery import app as celery_app
from tests.factories import POD, fund, make_node
from tests.support import JsonLines, capturing, wait_for


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    with capturing() as lines:
        yield lines


def test_incoming_id_is_answered_and_logged(client, settings, json_logs):
    settings.LOG_ACCESS = True
    response = client.get("/healthz", HTTP_X_REQUEST_ID="client-id-123")
    assert response["X-Request-ID"] == "client-id-123"
    access = [r for r in json_logs.records() if r["logger"] == "gco.access"]
    assert access[-1]["request_id"] == "client-id-123"
    assert access[-1]["route"] == "/healthz"
    assert access[-1]["status"] == 200


def test_unacceptable_id_is_replaced(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\twith spaces")
    made_up = response["X-Request-ID"]
    assert made_up != "bad id\twith spaces"
    assert len(made_up) == 32
    assert client.get("/healthz")["X-Request-ID"] != made_up  # one per request


@pytest.mark.django_db(transaction=True)
def test_id_rides_a_celery_task_to_its_agent_commands(monkeypatch, user):
    # Given a node with free GPUs and a pod waiting for a place
    node = make_node(gpus=2)
    fund(user, 10_000_000)
    pod = Pod.objects.create(owner=user, **POD)
    rid = f"req-{uuid.uuid4().hex}"
    assert celery_app.conf.broker_url.startswith("redis://"), "needs REDIS_URL"

    # When code serving request `rid` publishes the scheduler task to a real worker (which
    # keeps the root logger's handlers, as LOG_FORMAT=json sets it to)
    monkeypatch.setitem(celery_app.conf, "worker_hijack_root_logger", False)
    with (
        start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="INFO"),
        capturing() as json_logs,  # after the worker's start-up has configured logging
    ):
        with request_context.bound(rid):
            schedule_pending_pods.delay()

        def finished() -> list[dict]:
            # The task's "succeeded" line comes after its work is committed: wait for it
            # while the worker runs, rather than for the pod, whose change is seen first.
            return [
                r
                for r in json_logs.records()
                if r["logger"] == "celery.app.trace" and "pods.schedule_pending" in r["message"]
            ]

        task_lines = wait_for(finished, "the task's trace line", timeout=30)

    # Then the worker's lines for that task carry the id
    assert Pod.objects.get(pk=pod.pk).status == PodStatus.SCHEDULED
    assert {r["request_id"] for r in task_lines} == {rid}
    assert {r["task"] for r in task_lines} == {"pods.schedule_pending"}
    # and so does the start_pod command it queued for the agent
    command = NodeCommand.objects.get(node=node, type="start_pod")
    assert command.payload["pod_id"] == str(pod.pk)
    assert command.payload["request_id"] == rid
