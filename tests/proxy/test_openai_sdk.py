"""Every /v1 endpoint through the official `openai` SDK against our ASGI app, routed to echo
test backends; refusals come back as the SDK's own error classes."""

import httpx
import openai
import pytest

from apps.catalog.models import ModelUsageLog
from tests.factories import make_deployment
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=20)


@pytest.fixture
def deployed(proxy_server, echo_backends, user):
    backend = echo_backends(name="replica-a")
    deployment, key = make_deployment(user, backends=[backend])
    return deployment, sdk(proxy_server, key), key


def test_chat_completion(deployed):
    deployment, client, _ = deployed

    reply = client.chat.completions.create(
        model="echo-model", messages=[{"role": "user", "content": "hello there"}]
    )

    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.system_fingerprint == "replica-a"
    assert reply.usage.prompt_tokens == 2
    assert reply.usage.completion_tokens == 3


def test_chat_completion_stream(deployed):
    _, client, _ = deployed

    stream = client.chat.completions.create(
        model="echo-model",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[-1].usage.completion_tokens == 4


def test_completions_plain_and_streamed(deployed):
    _, client, _ = deployed

    plain = client.completions.create(model="echo-model", prompt="say this")
    streamed = client.completions.create(model="echo-model", prompt="say this", stream=True)

    assert plain.choices[0].text == "echo: say this"
    assert "".join(c.choices[0].text for c in streamed) == "echo: say this"


def test_embeddings(deployed):
    _, client, _ = deployed

    result = client.embeddings.create(model="echo-model", input=["a", "b c"])

    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 3


def test_audio_transcription_multipart(deployed):
    _, client, _ = deployed

    result = client.audio.transcriptions.create(
        model="echo-model", file=("speech.txt", b"the spoken words")
    )

    assert result.text == "the spoken words"


def test_audio_speech_returns_audio_bytes(deployed):
    _, client, _ = deployed

    audio = client.audio.speech.create(model="echo-model", voice="alloy", input="hello")

    data = audio.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) == 44 + 2 * 800  # 0.01 s of 16 kHz silence per character


def test_images_generation(deployed):
    _, client, _ = deployed

    result = client.images.generate(model="echo-model", prompt="a red square", n=2)

    assert len(result.data) == 2
    assert result.data[0].b64_json


def test_models_list_and_retrieve(deployed):
    _, client, _ = deployed

    assert [m.id for m in client.models.list()] == ["echo-model"]
    assert client.models.retrieve("echo-model").id == "echo-model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_x_api_key_header_works_too(deployed, proxy_server):
    _, _, key = deployed

    response = httpx.post(
        proxy_server.url + "/v1/chat/completions",
        headers={"X-API-Key": key},
        json={"model": "echo-model", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "echo: hi"


def test_usage_is_recorded_in_batches(deployed):
    deployment, client, _ = deployed

    for _ in range(3):
        client.chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "count me"}]
        )

    rows = wait_for(
        lambda: (
            list(ModelUsageLog.objects.filter(deployment=deployment)) or None
            if ModelUsageLog.objects.filter(deployment=deployment).count() >= 3
            else None
        ),
        "three usage rows",
    )
    assert {(r.endpoint, r.status_code, r.prompt_tokens, r.completion_tokens) for r in rows} == {
        ("chat/completions", 200, 2, 3)
    }


# --- refusals ------------------------------------------------------------------------------------


def test_bad_key_is_401(deployed, proxy_server):
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(proxy_server, "sk_not-a-real-key").chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_missing_key_is_401(proxy_server):
    response = httpx.post(proxy_server.url + "/v1/embeddings", json={"model": "x", "input": "y"})

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_model_not_in_this_deployment_is_404(deployed):
    _, client, _ = deployed

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="llama-3.1-70b", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_found"


def test_endpoint_the_deployment_does_not_serve_is_404(proxy_server, echo_backends, user):
    _, key = make_deployment(user, backends=[echo_backends()], capabilities=["embeddings"])

    with pytest.raises(openai.NotFoundError):
        sdk(proxy_server, key).chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "hi"}]
        )


def test_rate_limited_is_429_with_retry_after(proxy_server, echo_backends, user):
    _, key = make_deployment(user, backends=[echo_backends()], rate_limit_per_minute=2)
    client = sdk(proxy_server, key)
    for _ in range(2):
        client.embeddings.create(model="echo-model", input="x")

    with pytest.raises(openai.RateLimitError) as caught:
        client.embeddings.create(model="echo-model", input="x")
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60


def test_no_ready_replica_is_503(proxy_server, user):
    deployment, key = make_deployment(user, backends=[], status="LOADING")
    # The request is held for a replica (issue 14) up to queue_timeout_s, then refused.
    type(deployment).objects.filter(pk=deployment.pk).update(queue_timeout_s=1)

    with pytest.raises(openai.InternalServerError) as caught:
        sdk(proxy_server, key).chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 503
    assert caught.value.code == "no_ready_replica"


def test_bad_body_is_400_naming_the_field(deployed):
    _, client, _ = deployed

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="echo-model", messages=[])
    assert caught.value.param == "messages"


def test_other_users_key_never_reaches_my_deployment(proxy_server, echo_backends, user, other_user):
    mine, _ = make_deployment(user, backends=[echo_backends(name="mine")], model_name="mine")
    _, their_key = make_deployment(
        other_user, backends=[echo_backends(name="theirs")], model_name="theirs"
    )

    with pytest.raises(openai.NotFoundError):
        sdk(proxy_server, their_key).chat.completions.create(
            model="mine", messages=[{"role": "user", "content": "hi"}]
        )
    assert [m.id for m in sdk(proxy_server, their_key).models.list()] == ["theirs"]


def test_revoked_key_and_stopped_deployment_are_401(proxy_server, echo_backends, user):
    from apps.catalog.services.deploy import deployment_key_rotate, deployment_stop
    from apps.proxy.routing import router

    deployment, old_key = make_deployment(user, backends=[echo_backends()])
    new_key = deployment_key_rotate(deployment=deployment).raw
    router.invalidate()

    with pytest.raises(openai.AuthenticationError):
        sdk(proxy_server, old_key).embeddings.create(model="echo-model", input="x")
    assert sdk(proxy_server, new_key).embeddings.create(model="echo-model", input="x").data

    deployment_stop(deployment=deployment)
    router.invalidate()
    with pytest.raises(openai.AuthenticationError):
        sdk(proxy_server, new_key).embeddings.create(model="echo-model", input="x")


def test_body_over_the_limit_is_413_before_it_is_read(proxy_server, settings):
    settings.PROXY_MAX_BODY_BYTES = 1000

    response = httpx.post(
        proxy_server.url + "/v1/embeddings",
        content=b"x" * 2000,
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_rate_limit_counts_other_web_processes_through_redis(proxy_server, echo_backends, user):
    """Another web process's requests (its counts in Redis) count against the same limit."""
    import time

    import redis
    from django.conf import settings

    deployment, key = make_deployment(user, backends=[echo_backends()], rate_limit_per_minute=5)
    client = sdk(proxy_server, key)
    window = int(time.time() // 60)
    shared = redis.Redis.from_url(settings.REDIS_URL)
    for w in (window, window + 1):  # the test may straddle a minute
        shared.set(f"prl:{deployment.pk}:{w}", 5, ex=120)

    client.embeddings.create(model="echo-model", input="x")  # counted here, synced soon

    def refused() -> bool:
        try:
            client.embeddings.create(model="echo-model", input="x")
        except openai.RateLimitError:
            return True
        return False

    assert wait_for(refused, "the shared count to refuse")


def test_unknown_path_and_broken_json_answer_in_json(deployed, proxy_server):
    _, _, key = deployed

    missing = httpx.get(proxy_server.url + "/v1/no-such-endpoint")
    broken = httpx.post(
        proxy_server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        content=b'{"model": "echo-model", "messages": [',
    )

    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["error"]["message"]
