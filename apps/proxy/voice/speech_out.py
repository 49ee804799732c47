"""Reply audio to the client: one `audio_start` … binary PCM … `audio_end` stream, paced.

Pacing is the outbound backpressure: audio goes out no further than VOICE_AUDIO_LEAD_S ahead
of real-time playback, so a session never pushes a whole reply into the socket's send buffer
at once (a client that reads slowly or not at all holds at most the lead, plus what playback
has consumed), barge-in finds most of the reply still unsent, and while the pacer waits the
text-to-speech response is not read either, which pushes back on the backend over TCP."""

import asyncio
import time
from contextlib import aclosing
from typing import Any, Protocol

from apps.proxy.routing import DeploymentRoute
from apps.proxy.voice import backends
from apps.proxy.voice.audio import SAMPLE_WIDTH, pcm_seconds
from apps.proxy.voice.calls import CallRecord, stream_replica

CHUNK_S = 0.1  # binary frames of at most 100 ms


class ClientLink(Protocol):
    """What a session needs from its socket (the consumer implements it)."""

    async def send_event(self, event: dict[str, Any]) -> None: ...

    async def send_audio(self, pcm: bytes) -> None: ...

    async def fail(self, *, code: str, message: str, close_code: int) -> None: ...


class AudioStream:
    def __init__(self, link: ClientLink, *, audio_id: str, lead_s: float) -> None:
        self.link = link
        self.audio_id = audio_id
        self.lead_s = lead_s
        self.started = False
        self.sample_rate = 0
        self.sent_bytes = 0
        self.first_audio_at: float | None = None
        self._play_until = 0.0

    @property
    def sent_seconds(self) -> float:
        return pcm_seconds(self.sent_bytes, self.sample_rate) if self.sample_rate else 0.0

    async def speak(
        self,
        *,
        route: DeploymentRoute,
        text: str,
        voice: str | None,
        request_id: str,
        endpoint: str,
    ) -> None:
        record = CallRecord(endpoint=endpoint, route=route, started=time.monotonic())
        before = self.sent_seconds
        try:
            async with aclosing(
                stream_replica(
                    route,
                    record,
                    lambda base_url: backends.speech_stream(
                        base_url=base_url,
                        model=route.model_name,
                        text=text,
                        voice=voice,
                        request_id=request_id,
                    ),
                )
            ) as chunks:
                async for fmt, pcm in chunks:
                    await self._send(fmt.sample_rate, pcm)
        except Exception as exc:
            record.error = exc.__class__.__name__
            raise
        finally:
            record.audio_out_s = self.sent_seconds - before
            record.log()

    async def _send(self, sample_rate: int, pcm: bytes) -> None:
        if not self.started:
            self.started = True
            self.sample_rate = sample_rate
            await self.link.send_event(
                {
                    "type": "audio_start",
                    "id": self.audio_id,
                    "sample_rate": sample_rate,
                    "format": "pcm_s16le",
                }
            )
        elif sample_rate != self.sample_rate:
            raise backends.BackendError(
                f"text-to-speech changed its rate mid-reply ({self.sample_rate} → {sample_rate})",
                connected=True,
            )
        step = int(sample_rate * CHUNK_S) * SAMPLE_WIDTH
        for offset in range(0, len(pcm), step):
            piece = pcm[offset : offset + step]
            now = time.monotonic()
            ahead = self._play_until - now
            if ahead > self.lead_s:
                await asyncio.sleep(ahead - self.lead_s)
                now = time.monotonic()
            self._play_until = max(self._play_until, now) + pcm_seconds(len(piece), sample_rate)
            await self.link.send_audio(piece)
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
            self.sent_bytes += len(piece)

    async def finish(self) -> None:
        if self.started:
            await self.link.send_event({"type": "audio_end", "id": self.audio_id})
