"""Scale from zero in the /v1 proxy: a request to a deployment with no READY replica is held
(not refused), its place in the queue is bounded by `max_queue` (over every process) and its
wait by `queue_timeout_s`; it goes through — streaming too — as soon as a replica is READY, and
the wait is recorded as a cold start. Real proxy (uvicorn), real Redis and Postgres, real echo
backend processes; the replica turning READY is written by the test (the real agent and
Docker do it in tests/e2e/test_serverless.py)."""

import concurrent.futures
import json

import httpx
import openai
import pytest

from apps.catalog.load import queue_length
from apps.catalog.models import ColdStart, Deployment, Replica
from apps.catalog.services import lifecycle
from apps.proxy.hold import cold_starts
from tests.factories import make_deployment
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def idle_deployment(user, **scaling):
    deployment, key = make_deployment(user, backends=[], status="IDLE")
    Deployment.objects.filter(pk=deployment.pk).update(
        min_replicas=0, max_replicas=1, replicas=0, **scaling
    )
    return deployment, key


def chat(url, key, content, *, stream=False, timeout=60.0):
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "echo-model",
            "messages": [{"role": "user", "content": content}],
            "stream": stream,
        },
        timeout=timeout,
    )


def make_ready(deployment, backend):
    """What the health check does when a replica first answers: READY, and the deployment's
    status follows."""
    Replica.objects.create(
        deployment=deployment, port=backend.port, status="READY", base_url=backend.url
    )
    lifecycle.deployment_refresh_status(deployment_id=deployment.pk)


def test_held_request_goes_through_when_a_replica_turns_ready(
    proxy_server, echo_backends, user, settings
):
    settings.PROXY_HOLD_POLL_S = 0.05
    deployment, key = idle_deployment(user, queue_timeout_s=60)
    backend = echo_backends()
    pool = concurrent.futures.ThreadPoolExecutor(2)

    plain = pool.submit(chat, proxy_server.url, key, "held then served")
    streamed = pool.submit(chat, proxy_server.url, key, "held and streamed", stream=True)
    wait_for(lambda: queue_length(deployment.pk) == 2, "both requests held")
    assert not plain.done() and not streamed.done()
    make_ready(deployment, backend)

    reply = plain.result(timeout=60)
    stream = streamed.result(timeout=60)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "echo: held then served"
    assert stream.status_code == 200
    words = [
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in stream.text.splitlines()
        if line.startswith("data: {")
    ]
    assert "".join(words) == "echo: held and streamed"
    wait_for(lambda: queue_length(deployment.pk) == 0, "the queue emptied")
    wait_for(lambda: ColdStart.objects.filter(deployment=deployment).count() == 2, "cold starts")
    for cold in ColdStart.objects.filter(deployment=deployment):
        assert cold.first_byte_ms >= cold.held_ms > 0
    # The scale-up the held requests asked for is a deployment event.
    assert deployment.events.filter(reason__startswith="scale up 0 → 1").exists()


def test_queue_timeout_gives_503_with_retry_after_never_a_hang(proxy_server, user):
    deployment, key = idle_deployment(user, queue_timeout_s=1)

    response = chat(proxy_server.url, key, "nobody serves")

    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "no_ready_replica"
    assert "within 1 s" in error["message"]
    wait_for(lambda: queue_length(deployment.pk) == 0, "the place given back")


def test_one_past_max_queue_is_refused_at_once(proxy_server, echo_backends, user):
    deployment, key = idle_deployment(user, max_queue=2, queue_timeout_s=60)
    backend = echo_backends()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    held = [pool.submit(chat, proxy_server.url, key, f"held {i}") for i in range(2)]
    wait_for(lambda: queue_length(deployment.pk) == 2, "two requests held")

    extra = chat(proxy_server.url, key, "one too many", timeout=10)

    assert extra.status_code == 503 and extra.headers["Retry-After"]
    assert extra.json()["error"]["code"] == "queue_full"
    assert not any(f.done() for f in held)  # refused at once, while the others still wait
    make_ready(deployment, backend)
    assert [f.result(timeout=60).status_code for f in held] == [200, 200]


def test_openai_sdk_sees_a_held_request_as_a_normal_one(
    proxy_server, echo_backends, user, settings
):
    settings.PROXY_HOLD_POLL_S = 0.05
    deployment, key = idle_deployment(user, queue_timeout_s=60)
    backend = echo_backends()
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=key, max_retries=0)
    pool = concurrent.futures.ThreadPoolExecutor(1)

    future = pool.submit(
        client.chat.completions.create,
        model="echo-model",
        messages=[{"role": "user", "content": "cold"}],
    )
    wait_for(lambda: queue_length(deployment.pk) == 1, "the request held")
    make_ready(deployment, backend)

    assert future.result(timeout=60).choices[0].message.content == "echo: cold"
    cold_starts.take()


def test_timeout_through_the_sdk_is_a_503_error(proxy_server, user):
    _, key = idle_deployment(user, queue_timeout_s=1)
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=key, max_retries=0)

    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "nobody"}]
        )

    assert raised.value.status_code == 503
    assert raised.value.response.headers["Retry-After"]
