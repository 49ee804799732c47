"""Voice fixtures: a real daphne process serving config.asgi on 127.0.0.1 against the test
database, READY deployments that point at local backends, spoken English from espeak-ng, and
a small `websockets` client that records the protocol's events."""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, free_port
from tests.voice.backend import BackendConfig, VoiceTestBackend


def wait_for_port(port: int, what: str, proc: subprocess.Popen | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} on port {port}")


@dataclass
class VoiceServer:
    port: int
    proc: subprocess.Popen
    log_path: Path

    def url(self, path: str, key: str | None = None) -> str:
        query = f"?api_key={key}" if key is not None else ""
        return f"ws://127.0.0.1:{self.port}{path}{query}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def test_database_url() -> str:
    from django.conf import settings

    db = settings.DATABASES["default"]
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


@pytest.fixture
def voice_server(transactional_db, tmp_path) -> Iterator[Callable[..., VoiceServer]]:
    """`voice_server(VOICE_IDLE_TIMEOUT_S="1", ...)` starts `daphne config.asgi:application`
    on a free port with those settings; it is stopped after the test."""
    started: list[VoiceServer] = []

    def start(**overrides: str) -> VoiceServer:
        port = free_port()
        log_path = tmp_path / f"daphne-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
            "PROXY_USAGE_FLUSH_S": "0.2",
            "VOICE_PARTIAL_INTERVAL_S": "0",
            **overrides,
        }
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
            + ["config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = VoiceServer(port=port, proc=proc, log_path=log_path)
        started.append(server)
        wait_for_port(port, "daphne", proc, timeout=60)
        return server

    yield start
    for server in started:
        server.stop()
        # Shown by pytest only when the test failed.
        print(f"--- daphne on port {server.port}, last lines ---")
        print("\n".join(server.output().splitlines()[-60:]))


@pytest.fixture
def test_backend() -> Iterator[VoiceTestBackend]:
    with VoiceTestBackend(BackendConfig()) as backend:
        yield backend


# --- deployments --------------------------------------------------------------------------------


def make_template(slug: str, category: str, capabilities: list[str]) -> Any:
    from apps.catalog.models import ModelTemplate

    template, _ = ModelTemplate.objects.get_or_create(
        slug=slug,
        defaults={
            "name": slug,
            "category": category,
            "capabilities": capabilities,
            "served_model": slug,
            "image": "local/backends:1",
            "port": 8000,
            "recommended_gpu": "CPU",
            "gpu_count": 0,
        },
    )
    return template


CAPABILITY_CATEGORY = {"transcription": "audio-stt", "chat": "llm", "speech": "audio-tts"}


def ready_deployment(
    owner: Any,
    *,
    capability: str,
    base_url: str,
    model_name: str,
    status: str = "READY",
) -> tuple[Any, str]:
    """A deployment of `owner` serving `capability` from `base_url`, and a raw key for it."""
    from apps.catalog.models import Deployment, Replica
    from apps.catalog.services.deploy import deployment_key_issue

    template = make_template(
        f"voice-test-{capability}", CAPABILITY_CATEGORY[capability], [capability]
    )
    deployment = Deployment.objects.create(
        owner=owner,
        template=template,
        name=model_name,
        model_name=model_name,
        capabilities=[capability],
        image=template.image,
        port=template.port,
        health_path="/health",
        gpu_model="CPU",
        gpu_count=0,
        status=status,
    )
    Replica.objects.create(
        deployment=deployment,
        port=template.port,
        status="READY" if status == "READY" else "LOADING",
        base_url=base_url,
    )
    return deployment, deployment_key_issue(deployment=deployment).raw


@dataclass
class VoiceStack:
    stt: Any
    chat: Any
    tts: Any
    key: str  # the chat deployment's key (any of the three works)
    stt_key: str
    tts_key: str


def voice_stack(owner: Any, *, stt_url: str, chat_url: str, tts_url: str) -> VoiceStack:
    stt, stt_key = ready_deployment(
        owner, capability="transcription", base_url=stt_url, model_name="whisper-tiny.en"
    )
    chat, key = ready_deployment(owner, capability="chat", base_url=chat_url, model_name="smollm2")
    tts, tts_key = ready_deployment(
        owner, capability="speech", base_url=tts_url, model_name="espeak-ng"
    )
    return VoiceStack(stt=stt, chat=chat, tts=tts, key=key, stt_key=stt_key, tts_key=tts_key)


# --- audio --------------------------------------------------------------------------------------


def spoken_pcm(text: str, tmp_path: Path, rate: int = 16000) -> bytes:
    """`text` spoken by espeak-ng, as 16-bit mono PCM at `rate` (sox resamples)."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("needs Debian's espeak-ng and sox (apt-get install espeak-ng sox)")
    raw = tmp_path / f"speech-{abs(hash(text))}.wav"
    out = tmp_path / f"speech-{abs(hash(text))}-{rate}.raw"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), text], check=True)
    subprocess.run(
        ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed", str(out)],
        check=True,
    )
    return out.read_bytes()


def silence(seconds: float, rate: int = 16000) -> bytes:
    return b"\0\0" * int(seconds * rate)


# --- client -------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """What a client saw: JSON events as dicts, audio frames as bytes, in arrival order."""

    frames: list[Any] = field(default_factory=list)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if isinstance(f, dict)]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def audio_bytes(self) -> int:
        return sum(len(f) for f in self.frames if isinstance(f, bytes))


async def read_until(
    ws: Any, recorder: Recorder, done: Callable[[Any], bool], timeout: float = 60
) -> Any:
    """Receive frames into `recorder` until `done(frame)`; that frame is returned."""
    async with asyncio.timeout(timeout):
        while True:
            message = await ws.recv()
            frame = json.loads(message) if isinstance(message, str) else message
            recorder.frames.append(frame)
            if done(frame):
                return frame


def is_event(kind: str, **match: Any) -> Callable[[Any], bool]:
    def check(frame: Any) -> bool:
        return (
            isinstance(frame, dict)
            and frame.get("type") == kind
            and all(frame.get(k) == v for k, v in match.items())
        )

    return check


async def send_audio(ws: Any, pcm: bytes, chunk: int = 3200) -> None:
    """Send `pcm` in 100 ms frames (at 16 kHz), as fast as the socket takes them."""
    for offset in range(0, len(pcm), chunk):
        await ws.send(pcm[offset : offset + chunk])


def assert_turn_in_order(frames: list, audio_id: str) -> None:
    """transcription(final) → response deltas → response(final); audio_start after the first
    delta, binary audio only between audio_start and audio_end, audio_end after the whole
    response; the reply audio is not empty."""
    kinds = [f["type"] if isinstance(f, dict) else "audio" for f in frames]
    assert kinds[0] == "transcription" and frames[0]["final"] is True
    final_at = next(i for i, f in enumerate(frames) if is_event("response", delta=False)(f))
    deltas = [i for i, f in enumerate(frames) if is_event("response", delta=True)(f)]
    start_at = kinds.index("audio_start")
    end_at = kinds.index("audio_end")
    audio = [i for i, k in enumerate(kinds) if k == "audio"]
    assert deltas and deltas[0] == 1 and deltas[-1] < final_at
    assert deltas[0] < start_at < end_at and final_at < end_at
    assert audio and start_at < min(audio) and max(audio) < end_at
    assert frames[start_at]["id"] == frames[end_at]["id"] == audio_id
    assert frames[start_at]["format"] == "pcm_s16le" and frames[start_at]["sample_rate"] > 0
    whole = frames[final_at]["text"]
    assert whole == "".join(frames[i]["text"] for i in deltas)
