"""Which clients may open the voice sockets: browsers only from our own hosts (ALLOWED_HOSTS,
as Channels' AllowedHostsOriginValidator checks), non-browser clients (no Origin header: an
SDK, a server) always, each then authenticated by its deployment key."""

import asyncio
import json

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.voice.conftest import voice_stack


@pytest.mark.e2e
def test_foreign_browser_origins_are_refused_and_non_browser_clients_allowed(
    voice_server, test_backend, user
):
    stack = voice_stack(
        user, stt_url=test_backend.url, chat_url=test_backend.url, tts_url=test_backend.url
    )
    server = voice_server()
    url = server.url("/ws/voice-agent", stack.key)

    async def opens(origin: str | None) -> bool:
        try:
            async with websockets.connect(url, origin=origin) as ws:
                await ws.send(json.dumps({"type": "config", "sample_rate": 7}))
                return json.loads(await ws.recv())["code"] == "invalid_field"
        except InvalidStatus as refused:
            assert refused.response.status_code == 403
            return False

    assert asyncio.run(opens(None)) is True
    assert asyncio.run(opens(f"http://127.0.0.1:{server.port}")) is True
    assert asyncio.run(opens("http://localhost")) is True
    assert asyncio.run(opens("https://evil.example")) is False
