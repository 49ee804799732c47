"""THE TEST BACKEND ("echo-test"): a deterministic, instant OpenAI-compatible server for tests,
benchmarks and the offline demo. It is no model: it answers every /v1 endpoint from its input.

- chat/completions: the reply is "echo: " + the last user message; streamed one word per SSE
  chunk, `chunk_interval` seconds apart. Each chunk carries `x_emitted_at` (the backend's
  `time.time()` when it sent the chunk) and `system_fingerprint` = the server's `--name`, so a
  test can tell which replica answered and when the backend produced what.
  Tokens are counted as words. `stream_options.include_usage` adds the usage chunk.
- A request with `"x_test_gate": "<id>"` streams its first chunk, then waits before each next
  chunk until `POST /test/release/<id>` is called: a test that only releases chunk n+1 after
  it has received chunk n proves the path in between does not buffer.
- completions: echoes the prompt; embeddings: 8 floats derived from the text's SHA-256;
  audio/transcriptions: the uploaded file's bytes as UTF-8 text (or "<n> bytes of audio");
  audio/speech: a WAV of 16 kHz silence, 0.01 s per character; images/generations: a 1×1 PNG.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import struct
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

from backends.http import (
    App,
    HttpError,
    Request,
    Response,
    json_response,
    last_user_text,
    sse,
    words,
)

ONE_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class EchoBackend:
    def __init__(self, name: str = "echo", chunk_interval: float = 0.0) -> None:
        self.name = name
        self.chunk_interval = chunk_interval
        self.requests = 0
        self._gates: dict[str, asyncio.Event] = {}

    def app(self) -> App:
        return App(
            {
                ("GET", "/health"): self.health,
                ("GET", "/v1/models"): self.models,
                ("POST", "/v1/chat/completions"): self.chat,
                ("POST", "/v1/completions"): self.completions,
                ("POST", "/v1/embeddings"): self.embeddings,
                ("POST", "/v1/audio/transcriptions"): self.transcriptions,
                ("POST", "/v1/audio/speech"): self.speech,
                ("POST", "/v1/images/generations"): self.images,
                ("POST", "/test/release"): self.release,
            }
        )

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "name": self.name})

    async def models(self, request: Request) -> Response:
        return json_response(
            {
                "object": "list",
                "data": [{"id": self.name, "object": "model", "created": 0, "owned_by": "test"}],
            }
        )

    async def release(self, request: Request) -> Response:
        gate = str(request.json().get("id", ""))
        event = self._gates.setdefault(gate, asyncio.Event())
        event.set()
        return json_response({"released": gate})

    async def _wait_gate(self, gate: str) -> None:
        event = self._gates.setdefault(gate, asyncio.Event())
        await event.wait()
        event.clear()

    def _common(self, body: dict[str, Any]) -> tuple[str, int]:
        self.requests += 1
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise HttpError(400, "'model' is required.", param="model")
        return model, int(time.time())

    async def chat(self, request: Request) -> Response:
        body = request.json()
        model, created = self._common(body)
        prompt = last_user_text(body.get("messages"))
        reply = f"echo: {prompt}"
        prompt_tokens = sum(
            words(str(m.get("content", ""))) for m in body["messages"] if isinstance(m, dict)
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": words(reply),
            "total_tokens": prompt_tokens + words(reply),
        }
        cid = f"chatcmpl-{self.name}-{self.requests}"
        if not body.get("stream"):
            return json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": self.name,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        gate = body.get("x_test_gate")

        def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": self.name,
                "x_emitted_at": time.time(),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def stream() -> AsyncIterator[bytes]:
            pieces = reply.split(" ")
            for i, piece in enumerate(pieces):
                if i:
                    if gate:
                        await self._wait_gate(str(gate))
                    elif self.chunk_interval:
                        await asyncio.sleep(self.chunk_interval)
                text = piece if i == 0 else " " + piece
                delta = {"role": "assistant", "content": text} if i == 0 else {"content": text}
                yield sse(chunk(delta, None))
            yield sse(chunk({}, "stop"))
            if include_usage:
                last = chunk({}, None)
                last["choices"] = []
                last["usage"] = usage
                yield sse(last)
            yield sse("[DONE]")

        return Response(
            stream(), content_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    async def completions(self, request: Request) -> Response:
        body = request.json()
        model, created = self._common(body)
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            prompt = " ".join(str(p) for p in prompt)
        text = f"echo: {prompt or ''}"
        usage = {
            "prompt_tokens": words(str(prompt or "")),
            "completion_tokens": words(text),
            "total_tokens": words(str(prompt or "")) + words(text),
        }
        base = {
            "id": f"cmpl-{self.name}-{self.requests}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "system_fingerprint": self.name,
        }
        if not body.get("stream"):
            return json_response(
                {
                    **base,
                    "choices": [
                        {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                    ],
                    "usage": usage,
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            for i, piece in enumerate(text.split(" ")):
                if i and self.chunk_interval:
                    await asyncio.sleep(self.chunk_interval)
                yield sse(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "text": piece if i == 0 else " " + piece,
                                "finish_reason": None,
                                "logprobs": None,
                            }
                        ],
                    }
                )
            yield sse("[DONE]")

        return Response(stream(), content_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body = request.json()
        model, _ = self._common(body)
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise HttpError(400, "'input' must be a string or a list of strings.", param="input")
        data = []
        for index, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            vector = [round(b / 255.0, 6) for b in digest[:8]]
            data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(words(str(t)) for t in inputs)
        return json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def transcriptions(self, request: Request) -> Response:
        form = request.form()
        if "file" not in form or not isinstance(form["file"], tuple):
            raise HttpError(400, "'file' is required.", param="file")
        self._common({"model": form.get("model")})
        _, payload = form["file"]
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            text = f"{len(payload)} bytes of audio"
        if form.get("response_format") == "text":
            return Response(text.encode(), content_type="text/plain; charset=utf-8")
        return json_response({"text": text})

    async def speech(self, request: Request) -> Response:
        body = request.json()
        self._common(body)
        text = body.get("input")
        if not isinstance(text, str) or not text:
            raise HttpError(400, "'input' is required.", param="input")
        frames = int(16000 * 0.01 * len(text))
        pcm = struct.pack(f"<{frames}h", *([0] * frames))
        if body.get("response_format") == "pcm":
            return Response(pcm, content_type="audio/pcm")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(16000)
            out.writeframes(pcm)
        return Response(buffer.getvalue(), content_type="audio/wav")

    async def images(self, request: Request) -> Response:
        body = request.json()
        self._common(body)
        count = int(body.get("n") or 1)
        return json_response(
            {
                "created": int(time.time()),
                "data": [
                    {"b64_json": base64.b64encode(ONE_PIXEL_PNG).decode(), "revised_prompt": None}
                    for _ in range(max(1, min(count, 4)))
                ],
            }
        )
