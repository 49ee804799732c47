"""The autoscaler sees outstanding requests summed over every web process, not per process:
two real daphne processes serve /v1 on the test database, each with requests in flight (and
held), and the Redis-published load adds them up."""

import concurrent.futures
import signal

import httpx
import pytest

from apps.catalog.load import load_snapshot, queue_length
from apps.catalog.models import Deployment
from apps.catalog.services import lifecycle
from tests.factories import make_deployment
from tests.support import start_daphne, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture
def two_web_processes(settings):
    if not settings.REDIS_URL:
        pytest.skip("summing over processes goes through Redis (REDIS_URL)")
    started = [start_daphne(PROXY_LOAD_SYNC_S="0.1") for _ in range(2)]
    yield [url for _, url in started]
    for proc, _ in started:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except Exception:
            proc.kill()


def gated_stream(url: str, key: str, gate: str) -> str:
    """A chat stream that sends its first word and then waits for `gate` to be released."""
    with httpx.stream(
        "POST",
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "echo-model",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "x_test_gate": gate,
        },
        timeout=60,
    ) as response:
        return response.read().decode()


def test_in_flight_requests_of_two_processes_are_summed(two_web_processes, echo_backends, user):
    backend = echo_backends()
    deployment, key = make_deployment(user, backends=[backend])
    replica_id = deployment.replica_set.get().pk
    first, second = two_web_processes
    pool = concurrent.futures.ThreadPoolExecutor(5)

    streams = [pool.submit(gated_stream, first, key, f"a{i}") for i in range(3)]
    streams += [pool.submit(gated_stream, second, key, f"b{i}") for i in range(2)]

    wait_for(lambda: load_snapshot().replica(replica_id) == 5, "5 in flight over 2 processes")
    for gate in ["a0", "a1", "a2", "b0", "b1"]:
        httpx.post(backend.url + "/test/release", json={"id": gate})
    assert all("[DONE]" in s.result(timeout=60) for s in streams)
    wait_for(lambda: load_snapshot().replica(replica_id) == 0, "nothing in flight")


def test_held_requests_of_two_processes_are_summed(two_web_processes, echo_backends, user):
    deployment, key = make_deployment(user, backends=[], status="IDLE")
    Deployment.objects.filter(pk=deployment.pk).update(
        min_replicas=0, max_replicas=1, replicas=0, queue_timeout_s=60, max_queue=3
    )
    first, second = two_web_processes
    pool = concurrent.futures.ThreadPoolExecutor(4)

    def ask(url):
        return httpx.post(
            url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "echo-model", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )

    held = [pool.submit(ask, first), pool.submit(ask, first), pool.submit(ask, second)]
    wait_for(lambda: load_snapshot().held_for(deployment.pk) == 3, "3 held over 2 processes")
    assert queue_length(deployment.pk) == 3
    refused = ask(second)  # the queue bound holds across processes
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "queue_full"

    backend = echo_backends()
    deployment.replica_set.create(port=backend.port, status="READY", base_url=backend.url)
    lifecycle.deployment_refresh_status(deployment_id=deployment.pk)  # as the health check does
    assert [f.result(timeout=60).status_code for f in held] == [200, 200, 200]
    wait_for(lambda: load_snapshot().held_for(deployment.pk) == 0, "nothing held")
