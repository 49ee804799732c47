"""GET /api/v1/pods/{id}/logs under ASGI: the wait for the agent's answer runs in the event loop
in front of Django (apps/pods/logs_wait.py), so it holds none of the process's bounded request
slots; the answer and its headers are what the view would have sent."""

import asyncio
import time

import httpx
import pytest
from channels.db import database_sync_to_async
from django.core.asgi import get_asgi_application
from rest_framework.test import APIClient

from apps.accounts.services import api_key_create
from apps.core.asgi import BoundedConcurrency
from apps.nodes.models import CommandType, NodeCommand
from apps.pods.logs_wait import PodLogsWaiter
from tests.factories import POD, ack, fund, make_node, report_container

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def _running_pod(user):
    """A pod RUNNING on a node, and an API key of its owner."""
    fund(user, 100_000_000)
    node = make_node()
    client = APIClient()
    client.force_authenticate(user)
    pod_id = client.post("/api/v1/pods/", POD, format="json").json()["id"]
    report_container(node, pod_id, "running")
    return node, pod_id, api_key_create(user=user, name="cli").raw_key


async def _fetch_logs_command(deadline_s: float = 30) -> NodeCommand:
    deadline = time.monotonic() + deadline_s
    find = database_sync_to_async(
        lambda: NodeCommand.objects.filter(type=CommandType.FETCH_LOGS).first()
    )
    while time.monotonic() < deadline:
        command = await find()
        if command is not None:
            return command
        await asyncio.sleep(0.05)
    raise AssertionError("the view never asked the node for logs")


@pytest.fixture
def app():
    # One request slot and a short queue: a request that waited inside the bound would make
    # the second request below wait and be shed with 503.
    return PodLogsWaiter(BoundedConcurrency(get_asgi_application(), 1, queue_timeout_s=3))


async def test_the_wait_holds_no_request_slot_and_answers_as_the_view_would(app, user):
    # given a running pod and its owner's key
    node, pod_id, key = await database_sync_to_async(_running_pod)(user)
    headers = {"X-API-Key": key}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # when the owner asks for the logs and the agent has not answered yet
        pending = asyncio.create_task(
            client.get(f"/api/v1/pods/{pod_id}/logs", params={"tail": 50}, headers=headers)
        )
        command = await _fetch_logs_command()
        # then the only request slot is free meanwhile
        listed = await client.get("/api/v1/pods/", headers=headers)
        assert listed.status_code == 200
        assert not pending.done()
        # when the agent answers
        await database_sync_to_async(ack)(
            node, command.pk, succeeded=True, result={"logs": "epoch 1 loss 0.3\n"}
        )
        answer = await pending
    # then the logs come back with the site's headers, and nothing of the placeholder
    assert answer.status_code == 200
    assert answer.json() == {"pod_id": pod_id, "logs": "epoch 1 loss 0.3\n"}
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "x-gco-logs-command" not in answer.headers
    assert command.payload["tail"] == 50


async def test_a_node_that_fails_or_never_answers(app, user, settings):
    node, pod_id, key = await database_sync_to_async(_running_pod)(user)
    headers = {"X-API-Key": key}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        # a failed read is a 500 naming the node's error
        pending = asyncio.create_task(client.get(f"/api/v1/pods/{pod_id}/logs", headers=headers))
        command = await _fetch_logs_command()
        await database_sync_to_async(ack)(
            node, command.pk, succeeded=False, result={}, error="no such container"
        )
        failed = await pending
        assert failed.status_code == 500
        message = failed.json()["error"]["message"]
        assert message == "The node could not read logs: no such container"
        # no answer within POD_LOGS_WAIT_S is a 504 the client may retry
        settings.POD_LOGS_WAIT_S = 0.3
        silent = await client.get(f"/api/v1/pods/{pod_id}/logs", headers=headers)
        assert silent.status_code == 504
        assert silent.json()["error"]["code"] == "logs_timeout"
        # other tenants and bad input are answered by the view itself, as before
        assert (await client.get(f"/api/v1/pods/{pod_id}/logs")).status_code == 401
        bad = await client.get(f"/api/v1/pods/{pod_id}/logs?tail=0", headers=headers)
        assert bad.status_code == 400
