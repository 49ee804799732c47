"""The demo page in a real browser: headless Chromium whose microphone is a WAV of spoken
English (Chromium's fake capture device), the page's plain JavaScript speaking the protocol to
`/ws/voice-agent` on daphne, READY deployments on the voice TEST BACKEND. Skipped when
Playwright or Chromium is not installed."""

import os
import shutil
import wave
from pathlib import Path

import pytest

from tests.voice.conftest import silence, spoken_pcm, voice_stack

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")


@pytest.mark.e2e
def test_microphone_to_voice_agent_to_speaker(
    voice_server, test_backend, user, client, tmp_path: Path
):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    # given deployments, a signed-in user, and a microphone that says one sentence then waits
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    test_backend.config.transcript = "what time is it"
    mic = tmp_path / "mic.wav"
    with wave.open(str(mic), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(silence(0.5) + spoken_pcm("What time is it?", tmp_path) + silence(6.0))
    client.force_login(user)
    session_cookie = client.cookies["sessionid"].value
    server = voice_server()
    base = f"http://127.0.0.1:{server.port}"

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": session_cookie, "url": base}])
            page = context.new_page()
            console_errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
            page.goto(f"{base}/voice/demo")

            # when the user pastes a key and starts talking
            page.fill("#voice-key", stack.key)
            page.click("#voice-start")

            # then the transcript and the spoken reply show up
            page.wait_for_selector("#voice-log li.user", timeout=60_000)
            page.wait_for_function(
                "document.querySelector('#voice-log li.assistant')?.textContent"
                ".includes('You said: what time is it.')",
                timeout=60_000,
            )
            assert page.text_content("#voice-log li.user") == "what time is it"
            page.wait_for_function(
                "['Speaking…', 'Listening…'].includes("
                "document.getElementById('voice-status').textContent)",
                timeout=30_000,
            )
            page.click("#voice-stop")
            assert page.text_content("#voice-status") == "Stopped."
            assert not [e for e in console_errors if "Content Security Policy" in e]
        finally:
            browser.close()

    tts = [s for s in test_backend.stamps if s.kind == "tts"]
    assert tts and tts[0].detail["input"] == "You said: what time is it."
