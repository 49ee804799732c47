"""`/ws/audio/speech` end to end (daphne, `websockets`, the voice TEST BACKEND)."""

import asyncio
import json

import pytest
import websockets

from tests.voice.conftest import Recorder, is_event, read_until, ready_deployment


@pytest.mark.e2e
def test_speak_streams_audio_between_start_and_end(voice_server, test_backend, user):
    _, key = ready_deployment(
        user, capability="speech", base_url=test_backend.url, model_name="espeak-ng"
    )
    server = voice_server()

    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/audio/speech", key)) as ws:
            await ws.send(json.dumps({"type": "speak", "text": "Hello world.", "id": "a1"}))
            await ws.send(json.dumps({"type": "speak", "text": "Second.", "voice": "nova"}))
            await read_until(ws, recorder, is_event("audio_end", id="a1"))
            await read_until(ws, recorder, lambda f: len(recorder.of_type("audio_end")) == 2)
        return recorder

    recorder = asyncio.run(scenario())

    kinds = [f["type"] if isinstance(f, dict) else "audio" for f in recorder.frames]
    first_end = kinds.index("audio_end")
    assert kinds[0] == "audio_start" and recorder.frames[0] == {
        "type": "audio_start",
        "id": "a1",
        "sample_rate": 22050,
        "format": "pcm_s16le",
    }
    assert set(kinds[1:first_end]) == {"audio"}
    first_audio = sum(len(f) for f in recorder.frames[1:first_end])
    assert first_audio == int(len("Hello world.") * 0.06 * 22050) * 2
    second_start = recorder.frames[first_end + 1]
    assert second_start["type"] == "audio_start" and second_start["id"] not in ("", "a1")
    assert recorder.frames[-1] == {"type": "audio_end", "id": second_start["id"]}
    assert [s.detail["input"] for s in test_backend.stamps if s.kind == "tts"] == [
        "Hello world.",
        "Second.",
    ]


@pytest.mark.e2e
def test_cancel_stops_a_speech_in_progress(voice_server, test_backend, user):
    _, key = ready_deployment(
        user, capability="speech", base_url=test_backend.url, model_name="espeak-ng"
    )
    server = voice_server(VOICE_AUDIO_LEAD_S="0.3")
    long_text = "A very long announcement that takes a while to read out loud. " * 5
    full_bytes = int(len(long_text) * 0.06 * 22050) * 2

    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/audio/speech", key)) as ws:
            await ws.send(json.dumps({"type": "speak", "text": long_text, "id": "long"}))
            await ws.send(json.dumps({"type": "speak", "text": "Queued.", "id": "queued"}))
            await read_until(ws, recorder, lambda f: isinstance(f, bytes))
            await ws.send(json.dumps({"type": "cancel", "id": "queued"}))
            await ws.send(json.dumps({"type": "cancel", "id": "long"}))
            await read_until(ws, recorder, is_event("audio_end", id="long"))
            await ws.send(json.dumps({"type": "speak", "text": "After.", "id": "after"}))
            await read_until(ws, recorder, is_event("audio_end", id="after"))
        return recorder

    recorder = asyncio.run(scenario())

    ids = [e["id"] for e in recorder.of_type("audio_start")]
    assert ids == ["long", "after"]  # the queued one was dropped
    end_long = next(i for i, f in enumerate(recorder.frames) if is_event("audio_end", id="long")(f))
    long_audio = sum(len(f) for f in recorder.frames[:end_long] if isinstance(f, bytes))
    assert 0 < long_audio < full_bytes / 2


@pytest.mark.e2e
def test_bad_speak_messages_get_errors(voice_server, test_backend, user):
    _, key = ready_deployment(
        user, capability="speech", base_url=test_backend.url, model_name="espeak-ng"
    )
    server = voice_server()

    async def scenario() -> list[dict]:
        answers = []
        async with websockets.connect(server.url("/ws/audio/speech", key)) as ws:
            for frame in [
                json.dumps({"type": "speak"}),
                json.dumps({"type": "speak", "text": "   "}),
                json.dumps({"type": "speak", "text": "x" * 5000}),
                json.dumps({"type": "speak", "text": "hi", "voice": 3}),
                b"\x00\x00",
            ]:
                await ws.send(frame)
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        return answers

    answers = asyncio.run(scenario())
    assert [a["code"] for a in answers] == [
        "invalid_field",
        "invalid_field",
        "invalid_field",
        "invalid_field",
        "unexpected_audio",
    ]
    assert not test_backend.stamps
