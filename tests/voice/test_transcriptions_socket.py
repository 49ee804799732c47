"""`/ws/audio/transcriptions` end to end (daphne, `websockets`, the voice TEST BACKEND)."""

import asyncio
import json

import pytest
import websockets

from tests.voice.conftest import (
    Recorder,
    is_event,
    read_until,
    ready_deployment,
    send_audio,
    silence,
    spoken_pcm,
)


@pytest.mark.e2e
def test_partials_while_speaking_then_a_final_per_utterance(
    voice_server, test_backend, user, tmp_path
):
    # given a speech-to-text deployment, partials every 0.5 s of speech
    _, key = ready_deployment(
        user, capability="transcription", base_url=test_backend.url, model_name="whisper"
    )
    test_backend.config.transcript = "the quick brown fox"
    test_backend.config.stt_delay_s = 0.05
    server = voice_server(VOICE_PARTIAL_INTERVAL_S="0.5")
    first = spoken_pcm("The quick brown fox jumps over the lazy dog, again and again.", tmp_path)
    second = spoken_pcm("Second sentence here.", tmp_path)

    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/audio/transcriptions", key)) as ws:
            await ws.send(json.dumps({"type": "config", "language": "en", "sample_rate": 16000}))
            # sent at real-time pace, so partial transcripts have time to come back
            for offset in range(0, len(first), 3200):
                await ws.send(first[offset : offset + 3200])
                await asyncio.sleep(0.1)
            await send_audio(ws, silence(1.0))
            await read_until(ws, recorder, is_event("transcription", final=True))
            # the second utterance ends with the client's `end`, not with silence
            await send_audio(ws, second)
            await ws.send(json.dumps({"type": "end"}))
            await read_until(ws, recorder, is_event("transcription", final=True))
        return recorder

    recorder = asyncio.run(scenario())

    events = recorder.events
    finals = [i for i, e in enumerate(events) if e["final"]]
    assert len(finals) == 2
    partials_first = [e for e in events[: finals[0]] if not e["final"]]
    assert partials_first and all(e["text"] == "the quick brown fox" for e in partials_first)
    assert all(e["type"] == "transcription" for e in events)
    # the final of each utterance carries its whole audio; partials are logged, not billed
    from apps.catalog.models import ModelUsageLog
    from tests.support import wait_for

    finals_logged = wait_for(
        lambda: (
            list(ModelUsageLog.objects.filter(endpoint="ws/transcriptions").order_by("at"))
            if ModelUsageLog.objects.filter(endpoint="ws/transcriptions").count() == 2
            else None
        ),
        "two final transcription usage rows",
        timeout=30,
    )
    assert finals_logged[0].audio_in_s > finals_logged[1].audio_in_s > 0.5
    partials = ModelUsageLog.objects.filter(endpoint="ws/transcriptions:partial")
    assert partials.exists() and all(p.audio_in_s == 0 for p in partials)


@pytest.mark.e2e
def test_end_with_nothing_buffered_answers_an_empty_final(voice_server, test_backend, user):
    _, key = ready_deployment(
        user, capability="transcription", base_url=test_backend.url, model_name="whisper"
    )
    server = voice_server()

    async def scenario() -> dict:
        async with websockets.connect(server.url("/ws/audio/transcriptions", key)) as ws:
            await send_audio(ws, silence(0.5))
            await ws.send(json.dumps({"type": "end"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 30))

    assert asyncio.run(scenario()) == {"type": "transcription", "text": "", "final": True}
    assert not test_backend.stamps


@pytest.mark.e2e
def test_a_client_faster_than_the_backend_gets_overloaded_not_unbounded_buffering(
    voice_server, test_backend, user, tmp_path
):
    # given a slow speech-to-text backend and room for 2 waiting utterances
    _, key = ready_deployment(
        user, capability="transcription", base_url=test_backend.url, model_name="whisper"
    )
    test_backend.config.stt_delay_s = 1.0
    server = voice_server(VOICE_PENDING_UTTERANCES="2")
    utterance = spoken_pcm("One more thing.", tmp_path) + silence(0.8)

    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/audio/transcriptions", key)) as ws:
            # when the client sends 6 utterances at once, far faster than real time
            await send_audio(ws, utterance * 6)
            await read_until(ws, recorder, lambda f: len(recorder.of_type("transcription")) == 3)
        return recorder

    recorder = asyncio.run(scenario())

    # then one is being transcribed, two wait, and the other three are refused out loud
    overloaded = [e for e in recorder.of_type("error") if e["code"] == "overloaded"]
    assert len(overloaded) == 3
    assert len(recorder.of_type("transcription")) == 3
