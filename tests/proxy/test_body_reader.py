"""`/v1` reads no body before the deployment key is checked, and stops reading a body as soon as
it passes PROXY_MAX_BODY_BYTES, whatever its transfer encoding. Measured at the ASGI `receive`
of the app under a real server (uvicorn), with the body sent over a plain socket."""

import json
from collections.abc import Iterator

import pytest

from tests.factories import make_deployment
from tests.proxy.asgi_calls import CountingApp, chunked, raw_exchange
from tests.support import AsgiServer

MiB = 1024 * 1024
PIECE = 64 * 1024


@pytest.fixture
def counted(transactional_db) -> Iterator[tuple[AsgiServer, CountingApp]]:
    from apps.proxy.routing import router, usage_buffer
    from config.asgi import application

    router.invalidate()
    app = CountingApp(application)
    server = AsgiServer(app).start()
    yield server, app
    server.stop()
    usage_buffer.take()


@pytest.fixture
def key(user):
    # A replica nobody listens on: a request that gets through is answered 503, never 401/413.
    _, raw = make_deployment(user, backends=["http://127.0.0.1:9"])
    return raw


def pieces(total: int) -> Iterator[bytes]:
    block = b"x" * PIECE
    for _ in range(total // PIECE):
        yield block


def send(server, tag, encoding, total, **headers):
    headers = {"Content-Type": "application/json", "X-Test-Tag": tag, **headers}
    if encoding == "content-length":
        headers["Content-Length"] = str(total)
        body = pieces(total)
    else:
        headers["Transfer-Encoding"] = "chunked"
        body = chunked(pieces(total))
    return raw_exchange(server.port, "POST", "/v1/chat/completions", headers, body)


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_no_body_is_read_without_a_valid_key(counted, encoding, settings):
    server, app = counted
    settings.PROXY_MAX_BODY_BYTES = 1000 * MiB  # the cap is not what stops these
    credentials = {"none": {}, "bearer": {"Authorization": "Bearer sk_made-up"}}
    credentials["x-api-key"] = {"X-API-Key": "sk_nope"}
    for name, credential in credentials.items():
        tag = f"{encoding}-{name}"

        answer = send(server, tag, encoding, 200 * MiB, **credential)

        assert answer.status == 401
        assert json.loads(answer.body)["error"]["code"] == "invalid_api_key"
        assert app.reads[tag].bytes_read == 0


@pytest.mark.parametrize("encoding", ["content-length", "chunked"])
def test_a_body_over_the_cap_is_refused_after_at_most_cap_plus_one_chunk(
    counted, key, encoding, settings
):
    server, app = counted
    settings.PROXY_MAX_BODY_BYTES = cap = 1 * MiB

    answer = send(server, encoding, encoding, 30 * MiB, Authorization=f"Bearer {key}")

    assert answer.status == 413
    assert json.loads(answer.body)["error"]["code"] == "body_too_large"
    reads = app.reads[encoding]
    assert reads.bytes_read <= cap + reads.largest
    if encoding == "content-length":
        assert reads.bytes_read == 0  # the declared length alone refuses it
    else:
        assert reads.bytes_read > 0  # it had to be read to be measured: and it stopped


def test_a_chunked_body_within_the_cap_is_read_and_forwarded(counted, key, settings):
    server, app = counted
    settings.PROXY_MAX_BODY_BYTES = 1 * MiB
    payload = json.dumps(
        {"model": "echo-model", "messages": [{"role": "user", "content": "x" * 200_000}]}
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
        "Transfer-Encoding": "chunked",
        "X-Test-Tag": "small",
    }
    split = [payload[at : at + 4096] for at in range(0, len(payload), 4096)]

    answer = raw_exchange(server.port, "POST", "/v1/chat/completions", headers, chunked(split))

    assert app.reads["small"].bytes_read == len(payload)
    # Parsed, authorised and sent on: the only replica does not listen, so 503, not 400/413.
    assert answer.status == 503, answer.body
    assert json.loads(answer.body)["error"]["code"] == "no_ready_replica"
