"""`/ws/voice-agent` end to end: a real `websockets` client against daphne serving
config.asgi, READY deployments backed by the deterministic voice TEST BACKEND
(tests/voice/backend.py), audio spoken by espeak-ng."""

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.voice.backend import VoiceTestBackend
from tests.voice.conftest import (
    Recorder,
    assert_turn_in_order,
    is_event,
    read_until,
    ready_deployment,
    send_audio,
    silence,
    spoken_pcm,
    voice_stack,
)


async def one_turn(url: str, pcm: bytes, config: dict | None = None) -> Recorder:
    recorder = Recorder()
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps(config or {"type": "config", "sample_rate": 16000}))
        await send_audio(ws, pcm + silence(1.0))
        await read_until(ws, recorder, is_event("audio_end"))
    return recorder


@pytest.mark.e2e
def test_a_spoken_turn_comes_back_as_the_protocol_events_in_order(
    voice_server, test_backend, user, tmp_path
):
    # given a user with READY speech-to-text, chat and text-to-speech deployments
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    test_backend.config.transcript = "what is the capital of France"
    server = voice_server()
    pcm = spoken_pcm("What is the capital of France?", tmp_path)

    # when the client speaks one utterance
    recorder = asyncio.run(one_turn(server.url("/ws/voice-agent", stack.key), pcm))

    # then the events come in the protocol's order, with the reply spoken
    frames = [f for f in recorder.frames if not is_event("error")(f)]
    assert frames == recorder.frames, recorder.events
    assert frames[0]["text"] == "what is the capital of France"
    assert_turn_in_order(frames, "turn-1")
    assert recorder.of_type("response")[-1]["text"] == "You said: what is the capital of France."
    assert recorder.audio_bytes() > 0
    # the chat model got the system prompt and the user's words; speech got the reply
    chat = [s for s in test_backend.stamps if s.kind == "chat"]
    assert chat[0].detail["messages"][-1] == {
        "role": "user",
        "content": "what is the capital of France",
    }
    assert any(
        s.kind == "tts" and "capital of France" in s.detail["input"] for s in test_backend.stamps
    )


@pytest.mark.e2e
def test_usage_is_logged_against_each_deployment(voice_server, test_backend, user, tmp_path):
    from apps.catalog.models import ModelUsageLog
    from tests.support import wait_for

    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server()
    pcm = spoken_pcm("Hello there, how are you today?", tmp_path)

    recorder = asyncio.run(one_turn(server.url("/ws/voice-agent", stack.key), pcm))
    assert recorder.audio_bytes() > 0

    def rows() -> dict:
        by_deployment = {}
        for row in ModelUsageLog.objects.all():
            by_deployment.setdefault(row.deployment_id, []).append(row)
        return by_deployment if len(by_deployment) == 3 else {}

    logged = wait_for(rows, "usage rows for the three deployments", timeout=30)
    stt_row = logged[stack.stt.id][0]
    assert stt_row.endpoint == "ws/voice-agent:transcription" and stt_row.status_code == 200
    assert 1.0 < stt_row.audio_in_s < 10.0
    chat_row = logged[stack.chat.id][0]
    assert chat_row.completion_tokens == len("You said: hello there.".split())
    assert chat_row.prompt_tokens > 0
    tts_seconds = sum(r.audio_out_s for r in logged[stack.tts.id])
    assert tts_seconds == pytest.approx(recorder.audio_bytes() / 2 / 22050, rel=0.01)


@pytest.mark.e2e
def test_history_is_kept_for_the_session(voice_server, test_backend, user, tmp_path):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server()
    first = spoken_pcm("My name is Alice.", tmp_path)
    second = spoken_pcm("What is my name?", tmp_path)

    async def two_turns() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            await ws.send(json.dumps({"type": "config", "system_prompt": "Be brief."}))
            test_backend.config.transcript = "my name is Alice"
            await send_audio(ws, first + silence(1.0))
            await read_until(ws, recorder, is_event("audio_end", id="turn-1"))
            test_backend.config.transcript = "what is my name"
            await send_audio(ws, second + silence(1.0))
            await read_until(ws, recorder, is_event("audio_end", id="turn-2"))
        return recorder

    asyncio.run(two_turns())

    chats = [s for s in test_backend.stamps if s.kind == "chat"]
    assert chats[-1].detail["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "my name is Alice"},
        {"role": "assistant", "content": "You said: my name is Alice."},
        {"role": "user", "content": "what is my name"},
    ]


@pytest.mark.e2e
def test_barge_in_stops_the_reply_audio(voice_server, test_backend, user, tmp_path):
    # given a long reply (about 18 s of audio) paced 0.5 s ahead of playback
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    long_reply = "This is a long answer that goes on and on for a while. " * 5
    test_backend.config.reply = long_reply.strip()
    full_reply_bytes = int(len(long_reply.strip()) * 0.06 * 22050) * 2
    server = voice_server(VOICE_AUDIO_LEAD_S="0.5")
    question = spoken_pcm("Tell me a long story.", tmp_path)
    interruption = spoken_pcm("Stop, that is enough.", tmp_path)

    async def scenario() -> tuple[Recorder, Recorder]:
        before, after = Recorder(), Recorder()
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            await send_audio(ws, question + silence(1.0))
            await read_until(ws, before, lambda f: isinstance(f, bytes))
            # when the user speaks while the reply is playing
            test_backend.config.reply = "Okay."
            test_backend.config.transcript = "stop that is enough"
            await send_audio(ws, interruption + silence(1.0))
            await read_until(ws, after, is_event("interrupted"))
            await read_until(ws, after, is_event("audio_end", id="turn-2"))
        return before, after

    before, after = asyncio.run(scenario())

    # then the server stops the audio, says so, and hears the new utterance
    frames = before.frames + after.frames
    interrupted_at = next(i for i, f in enumerate(frames) if is_event("interrupted")(f))
    turn2_start = next(i for i, f in enumerate(frames) if is_event("audio_start", id="turn-2")(f))
    between = frames[interrupted_at + 1 : turn2_start]
    assert not any(isinstance(f, bytes) for f in between), "audio after interrupted"
    assert not any(is_event("audio_end", id="turn-1")(f) for f in frames)
    turn1_audio = sum(len(f) for f in frames[:interrupted_at] if isinstance(f, bytes))
    assert 0 < turn1_audio < full_reply_bytes / 2
    assert is_event("transcription", text="stop that is enough", final=True)(between[0])
    # the interrupted reply stays in the history, as far as it was generated
    last_chat = [s for s in test_backend.stamps if s.kind == "chat"][-1]
    roles = [m["role"] for m in last_chat.detail["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


@pytest.mark.e2e
def test_malformed_frames_get_an_error_and_the_session_goes_on(
    voice_server, test_backend, user, tmp_path
):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server()
    pcm = spoken_pcm("Are you still there?", tmp_path)
    bad_frames = [
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"no": "type"}),
        json.dumps({"type": "dance"}),
        json.dumps({"type": "config", "sample_rate": 12345}),
        json.dumps({"type": "config", "system_prompt": 42}),
        b"\x01\x02\x03",  # odd byte count: not 16-bit PCM
    ]

    async def scenario() -> tuple[list[dict], Recorder]:
        errors = []
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            for frame in bad_frames:
                await ws.send(frame)
                errors.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            recorder = Recorder()
            await send_audio(ws, pcm + silence(1.0))
            await read_until(ws, recorder, is_event("audio_end"))
        return errors, recorder

    errors, recorder = asyncio.run(scenario())

    assert [e["type"] for e in errors] == ["error"] * len(bad_frames)
    assert [e["code"] for e in errors] == [
        "invalid_json",
        "invalid_message",
        "invalid_message",
        "unknown_type",
        "invalid_field",
        "invalid_field",
        "invalid_audio",
    ]
    assert "sample_rate" in errors[4]["message"] and "system_prompt" in errors[5]["message"]
    # nothing changed: the session still hears 16 kHz speech with the default prompt
    assert_turn_in_order(recorder.frames, "turn-1")
    chat = [s for s in test_backend.stamps if s.kind == "chat"][0]
    assert chat.detail["messages"][0]["content"].startswith("You are a helpful voice assistant")


async def closed_with(url: str, headers: dict | None = None) -> tuple[int, list]:
    received = []
    async with websockets.connect(url, additional_headers=headers) as ws:
        try:
            while True:
                message = await asyncio.wait_for(ws.recv(), 30)
                received.append(json.loads(message) if isinstance(message, str) else message)
        except ConnectionClosed as closed:
            return closed.rcvd.code, received
    raise AssertionError("not closed")


@pytest.mark.e2e
def test_a_bad_or_missing_key_closes_with_4401_before_any_audio(voice_server, user):
    server = voice_server()
    for path in ("/ws/voice-agent", "/ws/audio/transcriptions", "/ws/audio/speech"):
        for url, headers in [
            (server.url(path, "sk_not-a-real-key"), None),
            (server.url(path), None),
            (server.url(path), {"Authorization": "Bearer sk_wrong"}),
            (server.url(path, "gco_a-personal-api-key"), None),
        ]:
            code, received = asyncio.run(closed_with(url, headers))
            assert code == 4401, (path, url)
            assert received[0]["type"] == "error" and received[0]["code"] == "invalid_api_key"
            assert not any(isinstance(frame, bytes) for frame in received)


@pytest.mark.e2e
def test_a_key_header_works_like_the_query_parameter(voice_server, test_backend, user, tmp_path):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server()

    async def scenario() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(
            server.url("/ws/voice-agent"),
            additional_headers={"Authorization": f"Bearer {stack.tts_key}"},
        ) as ws:
            await send_audio(ws, spoken_pcm("Hello.", tmp_path) + silence(1.0))
            await read_until(ws, recorder, is_event("audio_end"))
        return recorder

    assert asyncio.run(scenario()).audio_bytes() > 0


@pytest.mark.e2e
def test_deployments_not_ready_close_with_4409(voice_server, test_backend, user, other_user):
    server = voice_server()
    # the key's own deployment is still loading
    loading, loading_key = ready_deployment(
        user, capability="chat", base_url=test_backend.url, model_name="m", status="LOADING"
    )
    # the session is held for a replica (issue 14) up to queue_timeout_s, then refused
    type(loading).objects.filter(pk=loading.pk).update(queue_timeout_s=1)
    code, received = asyncio.run(closed_with(server.url("/ws/voice-agent", loading_key)))
    assert code == 4409 and received[0]["code"] == "deployment_not_ready"
    assert "became ready within 1 s" in received[0]["message"]

    # the user has chat but no speech-to-text; another user's STT and TTS never count
    _, chat_key = ready_deployment(
        user, capability="chat", base_url=test_backend.url, model_name="mine"
    )
    for capability in ("transcription", "speech"):
        ready_deployment(
            other_user, capability=capability, base_url=test_backend.url, model_name="theirs"
        )
    code, received = asyncio.run(closed_with(server.url("/ws/voice-agent", chat_key)))
    assert code == 4409
    assert "speech-to-text" in received[0]["message"]


@pytest.mark.e2e
def test_an_idle_session_closes_with_4408(voice_server, test_backend, user):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server(VOICE_IDLE_TIMEOUT_S="1")
    code, received = asyncio.run(closed_with(server.url("/ws/voice-agent", stack.key)))
    assert code == 4408
    assert received == [
        {
            "type": "error",
            "code": "idle_timeout",
            "message": "No audio or message for 1 s; closing.",
        }
    ]


@pytest.mark.e2e
def test_concurrent_sessions_per_key_are_limited(voice_server, test_backend, user):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server(VOICE_MAX_SESSIONS_PER_KEY="2")
    url = server.url("/ws/voice-agent", stack.key)

    async def scenario() -> tuple[int, list, bool]:
        async with websockets.connect(url) as first, websockets.connect(url) as second:
            await first.send(json.dumps({"type": "config"}))
            await second.send(json.dumps({"type": "config"}))
            code, received = await closed_with(url)
            # another key of the same user has slots of its own
            other_key_open = False
            async with websockets.connect(server.url("/ws/voice-agent", stack.stt_key)) as other:
                await other.send(json.dumps({"type": "config", "sample_rate": 99}))
                other_key_open = json.loads(await other.recv())["code"] == "invalid_field"
        return code, received, other_key_open

    code, received, other_key_open = asyncio.run(scenario())
    assert code == 4429 and received[0]["code"] == "too_many_sessions"
    assert other_key_open

    # closing the two frees the slots
    async def again() -> str:
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "config", "sample_rate": 1}))
            return json.loads(await ws.recv())["code"]

    assert asyncio.run(again()) == "invalid_field"


@pytest.mark.e2e
def test_fifty_concurrent_sessions_complete_without_error(
    voice_server, test_backend: VoiceTestBackend, user, tmp_path
):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server(VOICE_MAX_SESSIONS_PER_KEY="100")
    pcm = spoken_pcm("Good morning.", tmp_path) + silence(1.0)
    url = server.url("/ws/voice-agent", stack.key)

    async def session() -> Recorder:
        recorder = Recorder()
        async with websockets.connect(url, open_timeout=60) as ws:
            await send_audio(ws, pcm)
            await read_until(ws, recorder, is_event("audio_end"), timeout=120)
        return recorder

    async def all_sessions() -> list[Recorder]:
        return await asyncio.gather(*(session() for _ in range(50)))

    recorders = asyncio.run(all_sessions())

    assert len(recorders) == 50
    for recorder in recorders:
        assert not recorder.of_type("error")
        assert_turn_in_order(recorder.frames, "turn-1")
        assert recorder.audio_bytes() > 0
    assert "Traceback" not in server.output()


@pytest.mark.e2e
def test_a_backend_failure_sends_an_error_and_closes_with_1011(
    voice_server, test_backend, user, tmp_path
):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    test_backend.config.fail_stt = True
    server = voice_server()
    pcm = spoken_pcm("Can you hear me?", tmp_path)

    async def scenario() -> tuple[int, list]:
        received = []
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            await send_audio(ws, pcm + silence(1.0))
            try:
                while True:
                    message = await asyncio.wait_for(ws.recv(), 30)
                    received.append(json.loads(message) if isinstance(message, str) else message)
            except ConnectionClosed as closed:
                return closed.rcvd.code, received
        raise AssertionError("not closed")

    code, received = asyncio.run(scenario())
    assert code == 1011
    assert received[-1]["type"] == "error" and received[-1]["code"] == "backend_error"
    assert "500" in received[-1]["message"]


def stop_deployment(pk) -> None:
    """Mark a deployment STOPPED from a worker thread (and give its connection back)."""
    from django.db import connection

    from apps.catalog.models import Deployment

    try:
        Deployment.objects.filter(pk=pk).update(status="STOPPED")
    finally:
        connection.close()


@pytest.mark.e2e
def test_a_deployment_stopped_mid_session_ends_it_with_4409(
    voice_server, test_backend, user, tmp_path
):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server(PROXY_ROUTE_CACHE_S="0")
    pcm = spoken_pcm("Hello again.", tmp_path) + silence(1.0)

    async def scenario() -> tuple[int, list]:
        recorder = Recorder()
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            await send_audio(ws, pcm)
            await read_until(ws, recorder, is_event("audio_end"))
            # when the text-to-speech deployment is stopped while the caller talks
            await asyncio.to_thread(stop_deployment, stack.tts.pk)
            # routing serves its cache while it re-reads (stale-while-revalidate): the stop
            # is seen within a turn or two
            try:
                for _ in range(4):
                    await send_audio(ws, pcm)
                    await read_until(ws, recorder, is_event("audio_end"))
                raise AssertionError("the session outlived its stopped deployment")
            except ConnectionClosed as closed:
                return closed.rcvd.code, recorder.events

    code, events = asyncio.run(scenario())
    assert code == 4409
    assert events[-1]["code"] == "deployment_not_ready"
    assert "text-to-speech" in events[-1]["message"]


@pytest.mark.e2e
def test_the_session_limit_holds_across_web_processes(voice_server, test_backend, user, settings):
    if not settings.REDIS_URL:
        pytest.skip("the cross-process limit lives in Redis (set REDIS_URL)")
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    first = voice_server(VOICE_MAX_SESSIONS_PER_KEY="1")
    second = voice_server(VOICE_MAX_SESSIONS_PER_KEY="1")

    async def scenario() -> tuple[int, list]:
        async with websockets.connect(first.url("/ws/voice-agent", stack.key)) as held:
            await held.send(json.dumps({"type": "config"}))
            return await closed_with(second.url("/ws/voice-agent", stack.key))

    code, received = asyncio.run(scenario())
    assert code == 4429 and received[0]["code"] == "too_many_sessions"


@pytest.mark.e2e
def test_a_session_streaming_only_silence_is_idle(voice_server, test_backend, user):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server(VOICE_IDLE_TIMEOUT_S="1")

    async def scenario() -> int:
        async with websockets.connect(server.url("/ws/voice-agent", stack.key)) as ws:
            try:
                for _ in range(100):  # a microphone in a quiet room, 10 s at most
                    await ws.send(silence(0.1))
                    await asyncio.sleep(0.1)
                await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code
        raise AssertionError("not closed")

    assert asyncio.run(scenario()) == 4408
