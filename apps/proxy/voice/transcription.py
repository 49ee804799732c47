"""Streaming speech-to-text session (`/ws/audio/transcriptions`).

VAD cuts the audio into utterances. While one goes on, the speech so far is transcribed every
VOICE_PARTIAL_INTERVAL_S of new speech (one such request at a time: a partial that would queue
is skipped) and sent with `final: false`; when it ends (silence, or the client's `end`) it is
queued for its final transcript. At most VOICE_PENDING_UTTERANCES wait: past that an utterance
is dropped with an `overloaded` error (a client sending faster than real time cannot make the
server hold its audio without bound). A partial still running when its utterance ends is
cancelled, so a partial never follows its final."""

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from apps.proxy.routing import DeploymentRoute
from apps.proxy.voice import backends
from apps.proxy.voice.audio import DEFAULT_INPUT_RATE
from apps.proxy.voice.calls import fatal_from, transcribe_utterance
from apps.proxy.voice.messages import (
    FatalError,
    MessageError,
    VoiceConf,
    optional_sample_rate,
    optional_str,
)
from apps.proxy.voice.routes import LiveRoutes
from apps.proxy.voice.speech_out import ClientLink
from apps.proxy.voice.vad import SpeechEnded, SpeechStarted

logger = logging.getLogger(__name__)


class Transcriber:
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
        self.language: str | None = None
        self.sample_rate = DEFAULT_INPUT_RATE
        self.vad = self.conf.detector(self.sample_rate)
        self._finals: asyncio.Queue[tuple[int, bytes, int]] = asyncio.Queue(
            maxsize=conf.pending_utterances
        )
        self._worker: asyncio.Task[None] | None = None
        self._working = False
        self._partial: asyncio.Task[None] | None = None
        self._partial_mark = 0.0
        self._utterance = 0

    @property
    def hearing_speech(self) -> bool:
        return self.vad.in_speech

    @property
    def busy(self) -> bool:
        return self._working or not self._finals.empty()

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "config":
            language = optional_str(message, "language", max_chars=16)
            rate = optional_sample_rate(message)
            if language is not None:
                self.language = language or None
            if rate is not None and rate != self.sample_rate:
                self.sample_rate = rate
                self.vad = self.conf.detector(self.sample_rate)
        elif kind == "end":
            ended = self.vad.flush()
            if ended is not None:
                await self._finalize(ended.pcm)
            elif not self.busy:
                # Nothing was buffered: the client still gets a definite answer.
                await self.link.send_event({"type": "transcription", "text": "", "final": True})
        else:
            raise MessageError(
                "unknown_type",
                f"Unknown message type {kind!r}; expected 'config' or 'end'.",
            )

    async def on_audio(self, pcm: bytes) -> None:
        for event in self.vad.feed(pcm):
            if isinstance(event, SpeechStarted):
                self.routes.refresh()
                self._utterance += 1
                self._partial_mark = 0.0
            elif isinstance(event, SpeechEnded):
                await self._finalize(event.pcm)
        if (
            self.vad.in_speech
            and self.conf.partial_interval_s > 0
            and self.vad.speech_seconds - self._partial_mark >= self.conf.partial_interval_s
            and (self._partial is None or self._partial.done())
        ):
            self._partial_mark = self.vad.speech_seconds
            self._partial = asyncio.create_task(
                self._send_partial(self.vad.speech_pcm, self._utterance, self.sample_rate)
            )

    async def close(self) -> None:
        await self.routes.close()
        for task in (self._partial, self._worker):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _finalize(self, pcm: bytes) -> None:
        if self._partial is not None and not self._partial.done():
            self._partial.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._partial
        try:
            self._finals.put_nowait((self._utterance, pcm, self.sample_rate))
        except asyncio.QueueFull:
            await self.link.send_event(
                {
                    "type": "error",
                    "code": "overloaded",
                    "message": f"{self.conf.pending_utterances} utterances are already waiting "
                    "for their transcripts; this one was dropped. Send audio in real time.",
                }
            )
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())

    async def _work(self) -> None:
        while not self._finals.empty():
            number, pcm, rate = self._finals.get_nowait()
            self._working = True
            try:
                text = await transcribe_utterance(
                    route=await self.routes.get(),
                    pcm=pcm,
                    sample_rate=rate,
                    language=self.language,
                    request_id=str(uuid.uuid4()),
                    endpoint="ws/transcriptions",
                )
                await self.link.send_event({"type": "transcription", "text": text, "final": True})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, backends.BackendError | FatalError):
                    logger.exception("voice transcription failed")
                fatal = fatal_from(exc)
                await self.link.fail(
                    code=fatal.code, message=fatal.message, close_code=fatal.close_code
                )
                return
            finally:
                self._working = False

    async def _send_partial(self, pcm: bytes, number: int, rate: int) -> None:
        try:
            text = await transcribe_utterance(
                route=await self.routes.get(),
                pcm=pcm,
                sample_rate=rate,
                language=self.language,
                request_id=str(uuid.uuid4()),
                endpoint="ws/transcriptions:partial",
                bill_audio=False,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the final reports failures; a lost partial is harmless
            logger.warning("voice partial transcript failed: %s", exc)
            return
        if text:
            await self.link.send_event({"type": "transcription", "text": text, "final": False})
