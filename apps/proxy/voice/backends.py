"""OpenAI-compatible HTTP clients for the three voice backends, as the replicas speak them:
`/v1/audio/transcriptions` (multipart WAV → `{"text"}`), `/v1/chat/completions` with
`stream: true` (SSE deltas) and `/v1/audio/speech` (`response_format: "wav"`, streamed).

Each call is given a replica base URL by the caller (routing picks it) and a request id (a
UUID: llama-cpp-python's server refuses any other X-Request-ID with a bare 400) that is sent as
`X-Request-ID`, so one voice turn can be followed through every backend's logs.
Failures are `BackendError`; `connected` on it says whether any byte came back (before that
the caller may try another replica)."""

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import httpx

from apps.proxy.voice.audio import WavFormat, WavFormatError, WavStream, downmix_to_mono

logger = logging.getLogger(__name__)

_clients: dict[int, httpx.AsyncClient] = {}


class BackendError(Exception):
    def __init__(self, message: str, *, connected: bool) -> None:
        super().__init__(message)
        self.connected = connected


def http_client() -> httpx.AsyncClient:
    """One pooled client per event loop (the web process has one)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=3.0, read=60.0, write=30.0, pool=10.0),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            trust_env=False,
        )
        _clients[id(loop)] = client
    return client


def _headers(request_id: str) -> dict[str, str]:
    return {"X-Request-ID": request_id}


def _failure(what: str, exc: Exception) -> BackendError:
    connected = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    return BackendError(
        f"{what} backend unreachable: {exc.__class__.__name__}", connected=connected
    )


async def _raise_for_status(what: str, response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    body = (await response.aread())[:300].decode(errors="replace")
    raise BackendError(f"{what} backend answered {response.status_code}: {body}", connected=True)


async def transcribe(
    *, base_url: str, model: str, wav: bytes, language: str | None, request_id: str
) -> str:
    data = {"model": model, "response_format": "json"}
    if language:
        data["language"] = language
    try:
        response = await http_client().post(
            f"{base_url}/v1/audio/transcriptions",
            data=data,
            files={"file": ("audio.wav", wav, "audio/wav")},
            headers=_headers(request_id),
        )
    except httpx.HTTPError as exc:
        raise _failure("speech-to-text", exc) from exc
    await _raise_for_status("speech-to-text", response)
    try:
        return str(response.json()["text"]).strip()
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError("speech-to-text backend sent no text", connected=True) from exc


@dataclass
class ChatUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


async def chat_stream(
    *,
    base_url: str,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    request_id: str,
    usage: ChatUsage,
) -> AsyncGenerator[str, None]:
    """Yields the reply's text deltas as the model streams them and fills `usage` (from the
    final usage chunk when the backend sends one, else one token per content delta)."""
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "max_tokens": max_tokens,
        "stream_options": {"include_usage": True},
    }
    counted = 0
    reported = False
    try:
        async with http_client().stream(
            "POST", f"{base_url}/v1/chat/completions", json=body, headers=_headers(request_id)
        ) as response:
            await _raise_for_status("chat", response)
            done = False
            async for line in response.aiter_lines():
                # Read to the end even after [DONE]: a response left unread costs its pooled
                # connection (the next turn would open a new one).
                if done or not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    done = True
                    continue
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    continue
                if chunk.get("usage"):
                    usage.prompt_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                    usage.completion_tokens = int(chunk["usage"].get("completion_tokens") or 0)
                    reported = True
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        counted += 1
                        if not reported:
                            usage.completion_tokens = counted
                        yield text
    except httpx.HTTPError as exc:
        raise _failure("chat", exc) from exc


async def speech_stream(
    *, base_url: str, model: str, text: str, voice: str | None, request_id: str
) -> AsyncGenerator[tuple[WavFormat, bytes], None]:
    """Yields (format, PCM) pieces of the spoken `text` as the backend produces them."""
    body = {"model": model, "input": text, "response_format": "wav"}
    if voice:
        body["voice"] = voice
    parser = WavStream()
    try:
        async with http_client().stream(
            "POST", f"{base_url}/v1/audio/speech", json=body, headers=_headers(request_id)
        ) as response:
            await _raise_for_status("text-to-speech", response)
            async for data in response.aiter_bytes():
                try:
                    pcm = parser.feed(data)
                except WavFormatError as exc:
                    raise BackendError(f"text-to-speech backend: {exc}", connected=True) from exc
                fmt = parser.format
                if pcm and fmt is not None:
                    if fmt.channels != 1:
                        pcm = downmix_to_mono(pcm, fmt.channels)
                        fmt = WavFormat(sample_rate=fmt.sample_rate, channels=1, bits=fmt.bits)
                    yield fmt, pcm
    except httpx.HTTPError as exc:
        raise _failure("text-to-speech", exc) from exc
