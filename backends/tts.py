"""Text-to-speech: `/v1/audio/speech` over Debian's `espeak-ng` (22,050 Hz mono 16-bit).
`response_format` "wav" (default; also for "mp3"/"opus"/… which we do not encode) or "pcm"
(raw 16-bit little-endian at 22,050 Hz, the rate in the `x-sample-rate` header)."""

from __future__ import annotations

import asyncio
import shutil
import struct

from backends.http import App, HttpError, Request, Response, json_response

SAMPLE_RATE = 22050
VOICES = {"alloy": "en-us", "echo": "en-us+m3", "fable": "en-gb", "nova": "en-us+f3"}


def pcm_of_wav(wav: bytes) -> bytes:
    """The samples of a RIFF/WAVE file (espeak-ng's header may carry a bogus data length when
    it writes to a pipe, so walk the chunks and take the rest after `data`)."""
    pos = 12
    while pos + 8 <= len(wav):
        chunk_id = wav[pos : pos + 4]
        (size,) = struct.unpack("<I", wav[pos + 4 : pos + 8])
        if chunk_id == b"data":
            return wav[pos + 8 :]
        pos += 8 + size
    return b""


def wav_of_pcm(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + b"data" + struct.pack("<I", len(pcm)) + pcm


class EspeakBackend:
    def __init__(self, name: str = "espeak-ng") -> None:
        self.binary = shutil.which("espeak-ng")
        if self.binary is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.name = name

    def app(self) -> App:
        return App({("GET", "/health"): self.health, ("POST", "/v1/audio/speech"): self.speech})

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "name": self.name})

    async def speech(self, request: Request) -> Response:
        body = request.json()
        text = body.get("input")
        if not isinstance(text, str) or not text.strip():
            raise HttpError(400, "'input' is required.", param="input")
        if len(text) > 4096:
            raise HttpError(400, "'input' is longer than 4096 characters.", param="input")
        voice = VOICES.get(str(body.get("voice") or "alloy"), "en-us")
        speed = float(body.get("speed") or 1.0)
        words_per_minute = str(max(80, min(450, int(160 * speed))))
        process = await asyncio.create_subprocess_exec(
            str(self.binary),
            "-v",
            voice,
            "-s",
            words_per_minute,
            "--stdout",
            "--",  # the text is never an option
            text,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise HttpError(500, f"espeak-ng failed: {err.decode(errors='replace')[:200]}")
        pcm = pcm_of_wav(out)
        headers = {"x-sample-rate": str(SAMPLE_RATE)}
        if body.get("response_format") == "pcm":
            return Response(pcm, content_type="audio/pcm", headers=headers)
        return Response(wav_of_pcm(pcm), content_type="audio/wav", headers=headers)
