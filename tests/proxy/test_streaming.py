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


def test_chunks_100ms_apart_arrive_in_order_and_the_first_before_the_backend_is_done(
    proxy_server, echo_backends, user
):
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
    arrived = [a for a, _, _ in arrivals]
    assert emitted == sorted(emitted)
    assert arrived == sorted(arrived)
    # The first chunk was with the client before the backend produced its last one.
    assert arrived[0] < emitted[-1]
    # Every chunk reached the client after the backend emitted it and before the next one.
    for (got, _, _), (_, next_emitted, _) in zip(arrivals, arrivals[1:-1], strict=False):
        assert got < next_emitted + 0.1
    text = "".join(c.choices[0].delta.content or "" for _, _, c in arrivals)
    assert text == "echo: a b c d e"


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
        first_chunks = asyncio.Queue()

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
