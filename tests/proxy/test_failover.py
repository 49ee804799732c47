"""A replica that dies: requests move to the other replica, none hang."""

import asyncio
import uuid

import httpx
import openai
import pytest

from apps.proxy.routing import router
from tests.factories import make_deployment

pytestmark = pytest.mark.django_db(transaction=True)


def test_least_outstanding_replica_gets_the_request(proxy_server, echo_backends, user):
    """While replica A holds a long stream, new requests go to B."""
    a, b = echo_backends(name="a"), echo_backends(name="b")
    _, key = make_deployment(user, backends=[a, b])
    client = openai.OpenAI(
        base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=10
    )
    gate = str(uuid.uuid4())
    held = client.chat.completions.create(
        model="echo-model",
        messages=[{"role": "user", "content": "hold on"}],
        stream=True,
        extra_body={"x_test_gate": gate},
    )
    first = next(iter(held))
    busy = first.system_fingerprint

    answers = {
        client.chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "hi"}]
        ).system_fingerprint
        for _ in range(5)
    }

    assert answers == ({"a", "b"} - {busy})
    for backend in (a, b):
        httpx.post(backend.url + "/test/release", json={"id": gate})
        httpx.post(backend.url + "/test/release", json={"id": gate})
    held.close()


def test_replica_killed_mid_traffic_requests_move_to_the_other(proxy_server, echo_backends, user):
    a, b = echo_backends(name="a"), echo_backends(name="b")
    _, key = make_deployment(user, backends=[a, b])

    async def traffic() -> list[str]:
        client = openai.AsyncOpenAI(
            base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=15
        )

        async def one(i: int) -> str:
            reply = await client.chat.completions.create(
                model="echo-model", messages=[{"role": "user", "content": f"n{i}"}]
            )
            assert reply.choices[0].message.content == f"echo: n{i}"
            return reply.system_fingerprint

        answered = list(await asyncio.gather(*(one(i) for i in range(20))))
        a.kill()  # mid-traffic: in-flight and pooled connections to A break now
        answered += await asyncio.gather(*(one(i) for i in range(20, 120)))
        return answered

    answered = asyncio.run(asyncio.wait_for(traffic(), timeout=60))

    assert len(answered) == 120
    assert set(answered[:20]) == {"a", "b"}  # both served before the kill
    assert set(answered[20:]) == {"b"}


def test_stream_cut_by_a_dying_replica_ends_with_an_error_not_a_hang(
    proxy_server, echo_backends, user
):
    a = echo_backends(name="a")
    _, key = make_deployment(user, backends=[a])
    client = openai.OpenAI(
        base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=10
    )
    stream = client.chat.completions.create(
        model="echo-model",
        messages=[{"role": "user", "content": "never finished"}],
        stream=True,
        extra_body={"x_test_gate": str(uuid.uuid4())},
    )
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.content == "echo:"

    a.kill()

    with pytest.raises(openai.APIError, match="stopped in the middle"):
        next(chunks)


def test_every_replica_down_is_503_fast(proxy_server, echo_backends, user):
    a, b = echo_backends(name="a"), echo_backends(name="b")
    _, key = make_deployment(user, backends=[a, b])
    a.kill()
    b.kill()
    router.invalidate()
    client = openai.OpenAI(
        base_url=proxy_server.url + "/v1", api_key=key, max_retries=0, timeout=10
    )

    with pytest.raises(openai.InternalServerError) as caught:
        client.embeddings.create(model="echo-model", input="x")
    assert caught.value.status_code == 503
    # Both are quarantined now: the next request is refused without trying them.
    with pytest.raises(openai.InternalServerError) as again:
        client.embeddings.create(model="echo-model", input="x")
    assert "failing right now" in again.value.message
