"""One pod start followed by its request id: the client's X-Request-ID is on the web's JSON
access line, in the start_pod command's payload, and on the real agent process's JSON lines
for that command (each parsed as JSON). The Celery leg (a task published while serving a
request runs under its id and stamps it on the commands it queues) is
tests/core/test_request_id.py."""

import json
import uuid

import httpx
import pytest

from apps.accounts.services import api_key_create
from apps.nodes.models import Node, NodeCommand, NodeStatus
from apps.pods.models import Pod, PodStatus
from tests.factories import fund
from tests.support import capturing, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.django_db(transaction=True)]


def test_pod_start_id_reaches_the_agent(
    agent_env, live_server, settings, user, busybox_image, cleanup_containers
):
    settings.LOG_ACCESS = True
    agent = agent_env()
    wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).exists(), "node ONLINE")
    fund(user, 10_000_000)
    key = api_key_create(user=user, name="rid").raw_key
    rid = f"e2e-{uuid.uuid4().hex}"

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
    pod_id = created.json()["id"]

    # the web's line
    access = [
        r
        for r in web_logs.records()
        if r["logger"] == "gco.access" and r["route"] == "/api/v1/pods/"
    ]
    assert [r["request_id"] for r in access] == [rid]
    # the command the agent receives
    command = NodeCommand.objects.get(type="start_pod", payload__pod_id=pod_id)
    assert command.payload["request_id"] == rid
    # the agent's lines for it
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
