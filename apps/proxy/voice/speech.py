"""Streaming text-to-speech session (`/ws/audio/speech`).

`speak` requests are spoken one after another, each as its own `audio_start` … `audio_end`
(paced, see speech_out). At most VOICE_PENDING_SPEECHES wait; past that a request is refused
with an error event. `cancel` with an id stops that speech (in progress: the audio stops and
`audio_end` closes it; waiting: it is dropped); without an id it stops everything."""

import asyncio
import collections
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from apps.proxy.routing import DeploymentRoute
from apps.proxy.voice import backends
from apps.proxy.voice.calls import fatal_from
from apps.proxy.voice.messages import (
    MAX_NAME_CHARS,
    FatalError,
    MessageError,
    VoiceConf,
    optional_str,
    required_text,
)
from apps.proxy.voice.routes import LiveRoutes
from apps.proxy.voice.speech_out import AudioStream, ClientLink

logger = logging.getLogger(__name__)


@dataclass
class SpeakRequest:
    id: str
    text: str
    voice: str | None


class Synthesizer:
    def __init__(
        self,
        *,
        link: ClientLink,
        routes: LiveRoutes[DeploymentRoute],
        conf: VoiceConf,
        session_id: str,
    ) -> None:
        self.link = link
        self.routes = routes
        self.conf = conf
        self.session_id = session_id
        self._pending: collections.deque[SpeakRequest] = collections.deque()
        self._current: SpeakRequest | None = None
        self._current_task: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None

    hearing_speech = False  # takes no audio

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._pending)

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "speak":
            self._enqueue(message)
        elif kind == "cancel":
            self._cancel(optional_str(message, "id", max_chars=MAX_NAME_CHARS))
        else:
            raise MessageError(
                "unknown_type", f"Unknown message type {kind!r}; expected 'speak' or 'cancel'."
            )

    async def on_audio(self, pcm: bytes) -> None:
        raise MessageError("unexpected_audio", "This endpoint takes text ('speak'), not audio.")

    def _enqueue(self, message: dict[str, Any]) -> None:
        text = required_text(message, "text")
        voice = optional_str(message, "voice", max_chars=MAX_NAME_CHARS)
        speech_id = optional_str(message, "id", max_chars=MAX_NAME_CHARS) or uuid.uuid4().hex
        if len(self._pending) >= self.conf.pending_speeches:
            raise MessageError(
                "overloaded",
                f"{self.conf.pending_speeches} speeches are already waiting; this one was refused.",
            )
        self._pending.append(SpeakRequest(id=speech_id, text=text, voice=voice or None))
        self.routes.refresh()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    def _cancel(self, speech_id: str | None) -> None:
        self._pending = collections.deque(
            r for r in self._pending if speech_id is not None and r.id != speech_id
        )
        current = self._current
        if current is not None and speech_id in (None, current.id):
            if self._current_task is not None:
                self._current_task.cancel()

    async def close(self) -> None:
        await self.routes.close()
        self._pending.clear()
        for task in (self._current_task, self._worker):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _work(self) -> None:
        while self._pending:
            request = self._pending.popleft()
            self._current = request
            self._current_task = asyncio.create_task(self._speak(request))
            try:
                # wait() rather than await: a cancelled speech must not stop the worker.
                await asyncio.wait([self._current_task])
            finally:
                self._current = None
            failure = None
            if not self._current_task.cancelled():
                failure = self._current_task.exception()
            if failure is not None:
                if not isinstance(failure, backends.BackendError | FatalError):
                    logger.error("voice speech failed: %r", failure)
                fatal = fatal_from(failure)  # type: ignore[arg-type]
                await self.link.fail(
                    code=fatal.code, message=fatal.message, close_code=fatal.close_code
                )
                return

    async def _speak(self, request: SpeakRequest) -> None:
        audio = AudioStream(self.link, audio_id=request.id, lead_s=self.conf.audio_lead_s)
        try:
            await audio.speak(
                route=await self.routes.get(),
                text=request.text,
                voice=request.voice,
                request_id=str(uuid.uuid4()),
                endpoint="ws/speech",
            )
        finally:
            await asyncio.shield(audio.finish())
