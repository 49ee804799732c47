"""The voice TEST BACKEND as one asyncio process (ASGI under uvicorn), for the bench: the same
deterministic answers as tests/voice/backend.py, without a thread per connection (50 sessions'
worth of threads fighting over one GIL would measure the test backend, not the platform).

    python -m tests.voice.asgi_backend --port N [--speech-s-per-char S]

Stamps every request (X-Request-ID, received → answered; text-to-speech → first audio byte
written, `time.monotonic()`, system-wide on Linux) and serves them at `GET /test/stamps`."""

from __future__ import annotations

import argparse
import asyncio
import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from backends.http import App, Request, Response, json_response, last_user_text, sse
from tests.voice.backend import TTS_RATE, _tone_wav_header

_TONE = struct.pack(
    f"<{TTS_RATE}h",
    *(int(8000 * math.sin(2 * math.pi * 220 * i / TTS_RATE)) for i in range(TTS_RATE)),
)


class StampingBackend:
    def __init__(self, *, transcript: str, speech_s_per_char: float) -> None:
        self.transcript = transcript
        self.speech_s_per_char = speech_s_per_char
        self.stamps: list[dict[str, Any]] = []

    def app(self) -> App:
        return App(
            {
                ("GET", "/health"): self.health,
                ("GET", "/test/stamps"): self.get_stamps,
                ("POST", "/v1/audio/transcriptions"): self.transcriptions,
                ("POST", "/v1/chat/completions"): self.chat,
                ("POST", "/v1/audio/speech"): self.speech,
            }
        )

    def _stamp(self, request: Request, kind: str, **extra: Any) -> dict[str, Any]:
        stamp = {
            "kind": kind,
            "request_id": request.headers.get("x-request-id", ""),
            "start": time.monotonic(),
            "first_byte": 0.0,
            "end": 0.0,
            "system": "",
            **extra,
        }
        self.stamps.append(stamp)
        return stamp

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def get_stamps(self, request: Request) -> Response:
        return json_response({"stamps": [s for s in self.stamps if s["end"]]})

    async def transcriptions(self, request: Request) -> Response:
        stamp = self._stamp(request, "stt")
        request.form()
        stamp["first_byte"] = stamp["end"] = time.monotonic()
        return json_response({"text": self.transcript})

    async def chat(self, request: Request) -> Response:
        body = request.json()
        messages = body["messages"]
        stamp = self._stamp(request, "chat", system=messages[0]["content"])
        words = f"You said: {last_user_text(messages)}.".split(" ")

        async def stream() -> AsyncIterator[bytes]:
            for index, word in enumerate(words):
                text = word if index == 0 else " " + word
                yield sse({"choices": [{"index": 0, "delta": {"content": text}}]})
                if index == 0:
                    stamp["first_byte"] = time.monotonic()
            usage = {"prompt_tokens": len(messages), "completion_tokens": len(words)}
            yield sse({"choices": [], "usage": usage})
            yield sse("[DONE]")
            stamp["end"] = time.monotonic()

        return Response(stream(), content_type="text/event-stream")

    async def speech(self, request: Request) -> Response:
        text = request.json()["input"]
        stamp = self._stamp(request, "tts")
        total = int(len(text) * self.speech_s_per_char * TTS_RATE) * 2
        step = TTS_RATE // 10 * 2

        async def stream() -> AsyncIterator[bytes]:
            yield _tone_wav_header()
            for offset in range(0, total, step):
                size = min(step, total - offset)
                yield (_TONE * (1 + (offset + size) // len(_TONE)))[offset : offset + size]
                if not stamp["first_byte"]:
                    stamp["first_byte"] = time.monotonic()
                await asyncio.sleep(0)
            stamp["end"] = time.monotonic()

        return Response(stream(), content_type="audio/wav")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.voice.asgi_backend")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transcript", default="hello there")
    parser.add_argument("--speech-s-per-char", type=float, default=0.06)
    args = parser.parse_args()
    backend = StampingBackend(transcript=args.transcript, speech_s_per_char=args.speech_s_per_char)
    uvicorn.run(
        backend.app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
