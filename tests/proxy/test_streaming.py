"""Streaming is passed through chunk by chunk, never buffered."""

import time
import uuid

import httpx
import openai
import pytest

from tests.factories import make_deployment

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_chunk_reaches_the_client_before_the_backend_sends_the_next(
    proxy_server, echo_backends, user
):
    """Causal proof: the backend sends chunk n+1 only after the client has received chunk n
    (the test releases it). Had anything between them buffered, the client would never see
    chunk 1 and the request would time out."""
    backend = echo_backends(name="gated")
    _, key = make_deployment(user, backends=[backend])
    client = openai.OpenAI(
        base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=10
    )
    gate = str(uuid.uuid4())
    received = []

    stream = client.chat.completions.create(
        model="echo-model",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        extra_body={"x_test_gate": gate},
    )
    for chunk in stream:
        received.append(chunk.choices[0].delta.content)
        httpx.post(backend.url + "/test/release", json={"id": gate})

    assert received == ["echo:", " one", " two", " three", " four", None]


def test_chunks_paced_by_the_backend_arrive_one_by_one_in_order_and_whole(
    proxy_server, echo_backends, user
):
    """A backend that paces its chunks 100 ms apart, as a model generates: each reaches the
    client as its own event, in the order emitted, none before it was emitted, and the text is
    whole. That no chunk waits for the next is proven causally by the gated test above; how
    soon a chunk arrives is a figure of bench/proxy.py (stream, first chunk), not an assertion
    on wall-clock time (it fails on a busy machine)."""
    backend = echo_backends(name="slow", chunk_interval=0.1)
    _, key = make_deployment(user, backends=[backend])
    client = openai.OpenAI(
        base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=10
    )
    arrivals = []

    stream = client.chat.completions.create(
        model="echo-model",
        messages=[{"role": "user", "content": "a b c d e"}],
        stream=True,
    )
    for chunk in stream:
        arrivals.append((time.time(), chunk.model_extra["x_emitted_at"], chunk))

    emitted = [e for _, e, _ in arrivals]
    assert emitted == sorted(emitted)
    # Causal, so true however slow the machine: nothing arrives before it was emitted.
    assert all(got >= sent for got, sent, _ in arrivals)
    pieces = [c.choices[0].delta.content for _, _, c in arrivals]
    assert pieces == ["echo:", " a", " b", " c", " d", " e", None]


def test_many_concurrent_streams_are_not_capped_by_the_web_bound(
    proxy_server, echo_backends, user, settings
):
    """The site caps in-flight requests per process (WEB_MAX_CONCURRENT_REQUESTS); /v1 is
    routed around that cap, so more streams than the cap are open at once."""
    import asyncio

    backend = echo_backends(name="gated-many")
    _, key = make_deployment(user, backends=[backend])
    streams = 40  # over the default cap of 16
    gate = str(uuid.uuid4())

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(
            base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=20
        )
        first_chunks: asyncio.Queue[int] = asyncio.Queue()

        async def one() -> str:
            stream = await client.chat.completions.create(
                model="echo-model",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
                extra_body={"x_test_gate": gate},
            )
            text = ""
            async for chunk in stream:
                if not text:
                    await first_chunks.put(1)
                text += chunk.choices[0].delta.content or ""
            return text

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        for _ in range(streams):  # every stream is open and has its first chunk
            await asyncio.wait_for(first_chunks.get(), timeout=20)
        async with httpx.AsyncClient() as http:
            for _ in range(streams):
                await http.post(backend.url + "/test/release", json={"id": gate})
        return await asyncio.gather(*tasks)

    assert asyncio.run(run()) == ["echo: x"] * streams


def test_a_client_that_leaves_mid_stream_releases_the_replica(proxy_server, echo_backends, user):
    """The client hangs up after the first chunk: the proxy stops relaying, closes the
    upstream stream, gives the replica's outstanding-request slot back and records the request
    as cancelled by the client."""
    from apps.catalog.models import ModelUsageLog
    from apps.proxy.routing import router
    from tests.support import wait_for

    backend = echo_backends(name="left")
    deployment, key = make_deployment(user, backends=[backend])
    replica_id = deployment.replica_set.get().pk
    with httpx.Client(timeout=10) as http:
        with http.stream(
            "POST",
            proxy_server.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "model": "echo-model",
                "messages": [{"role": "user", "content": "never read to the end"}],
                "stream": True,
                "x_test_gate": str(uuid.uuid4()),
            },
        ) as response:
            # Hold the iterator: a dropped one is closed at once, closing the connection early.
            chunks = response.iter_raw()
            first = next(chunks)
            assert b"echo:" in first
            assert router.outstanding.get(replica_id) == 1

    wait_for(lambda: router.outstanding.get(replica_id, 0) == 0, "the replica's slot back")
    row = wait_for(
        lambda: ModelUsageLog.objects.filter(deployment=deployment).first(), "the usage row"
    )
    assert row.streamed and row.status_code == 200
    assert row.error == "client_cancelled"


def test_daphne_the_procfile_server_streams_unbuffered_too(transactional_db, echo_backends, user):
    """The same causal check through daphne, the web server of the Procfile."""
    from tests.support import start_daphne

    backend = echo_backends(name="gated-daphne")
    _, key = make_deployment(user, backends=[backend])
    daphne, url = start_daphne()
    try:
        client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)
        gate = str(uuid.uuid4())
        received = []
        for chunk in client.chat.completions.create(
            model="echo-model",
            messages=[{"role": "user", "content": "through daphne"}],
            stream=True,
            extra_body={"x_test_gate": gate},
        ):
            received.append(chunk.choices[0].delta.content)
            httpx.post(backend.url + "/test/release", json={"id": gate})
    finally:
        daphne.terminate()
        daphne.wait(timeout=20)

    assert received == ["echo:", " through", " daphne", None]
