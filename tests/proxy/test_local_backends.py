"""The real CPU backends (`make models`) behind the proxy, through the openai SDK: speech made
by espeak-ng comes back as text from Whisper tiny.en, MiniLM embeds, SmolLM2 answers. Skipped,
saying why, without the models venv."""

import os
import shutil
from pathlib import Path

import openai
import pytest

from tests.factories import make_deployment
from tests.support import ROOT, start_backend

pytestmark = [pytest.mark.models, pytest.mark.django_db(transaction=True)]

MODELS_VENV = Path(os.environ.get("MODELS_VENV") or ROOT / ".venv-models")


@pytest.fixture
def models_python():
    python = MODELS_VENV / "bin" / "python"
    if not python.exists():
        pytest.skip(
            f"the CPU model backends are not installed ({MODELS_VENV} missing): `make models` "
            "builds them (~5 min), or set MODELS_VENV"
        )
    return str(python)


@pytest.fixture
def real_backends(models_python):
    started = []

    def start(kind: str, name: str):
        backend = start_backend(kind, name=name, python=models_python)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.kill()


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs Debian's espeak-ng")
def test_speech_round_trip_through_tts_and_stt(proxy_server, real_backends, user):
    tts = real_backends("tts", "espeak")
    stt = real_backends("stt", "whisper")
    _, tts_key = make_deployment(user, backends=[tts], model_name="tts", capabilities=["speech"])
    _, stt_key = make_deployment(
        user, backends=[stt], model_name="stt", capabilities=["transcription"]
    )

    audio = client(proxy_server, tts_key).audio.speech.create(
        model="tts",
        voice="alloy",
        input="Please start a new GPU instance in the data center.",
        response_format="wav",
    )
    wav = audio.read()
    text = (
        client(proxy_server, stt_key)
        .audio.transcriptions.create(model="stt", file=("speech.wav", wav))
        .text
    )

    assert wav[:4] == b"RIFF" and len(wav) > 22050  # over half a second of 22,050 Hz speech
    assert "instance in the data center" in text.lower()


def test_minilm_embeddings(proxy_server, real_backends, user):
    backend = real_backends("embeddings", "minilm")
    _, key = make_deployment(user, backends=[backend], model_name="minilm")

    result = client(proxy_server, key).embeddings.create(
        model="minilm", input=["a cat sits on the mat", "a kitten rests on a rug", "GPU prices"]
    )

    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [384, 384, 384]

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))  # normalised vectors

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])


def test_smollm2_chat_streams(proxy_server, real_backends, user):
    backend = real_backends("chat", "smollm2")
    _, key = make_deployment(user, backends=[backend], model_name="smollm2")

    stream = client(proxy_server, key).chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]

    assert len(pieces) > 3  # token by token, not one blob
    assert "Paris" in "".join(pieces)
