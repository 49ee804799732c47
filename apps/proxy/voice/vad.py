"""Server-side voice activity detection: cuts a stream of PCM into utterances.

webrtcvad classifies 20 ms frames as voiced or not. An utterance starts when most of a short
window of frames is voiced (one loud click is not speech) and ends after `end_ms` of unbroken
silence. Every buffer is bounded: the partial frame (< 20 ms), the pre-roll ring (`preroll_ms`,
so the first syllable is not clipped) and the utterance itself (`max_utterance_s`, after which
the utterance is cut and handed on as if the speaker had paused)."""

from collections import deque
from dataclasses import dataclass

import webrtcvad

from apps.proxy.voice.audio import SAMPLE_WIDTH, SUPPORTED_INPUT_RATES, pcm_seconds

FRAME_MS = 20


@dataclass(frozen=True)
class SpeechStarted:
    pass


@dataclass(frozen=True)
class SpeechEnded:
    pcm: bytes
    forced: bool  # cut at max_utterance_s or flushed, not ended by silence


VadEvent = SpeechStarted | SpeechEnded


class UtteranceDetector:
    def __init__(
        self,
        *,
        sample_rate: int,
        aggressiveness: int = 2,
        start_ms: int = 100,
        window_ms: int = 200,
        end_ms: int = 500,
        preroll_ms: int = 200,
        max_utterance_s: float = 30.0,
    ) -> None:
        if sample_rate not in SUPPORTED_INPUT_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_INPUT_RATES}")
        self.sample_rate = sample_rate
        self._vad = webrtcvad.Vad(aggressiveness)
        self._frame_bytes = sample_rate * FRAME_MS // 1000 * SAMPLE_WIDTH
        self._start_frames = max(1, start_ms // FRAME_MS)
        self._window: deque[bool] = deque(maxlen=max(self._start_frames, window_ms // FRAME_MS))
        self._end_frames = max(1, end_ms // FRAME_MS)
        self._preroll: deque[bytes] = deque(maxlen=max(1, preroll_ms // FRAME_MS))
        self._max_bytes = int(max_utterance_s * sample_rate) * SAMPLE_WIDTH
        self._pending = b""
        self._utterance = bytearray()
        self._silent_run = 0
        self.in_speech = False

    @property
    def speech_pcm(self) -> bytes:
        """The utterance so far (for partial transcripts)."""
        return bytes(self._utterance)

    @property
    def speech_seconds(self) -> float:
        return pcm_seconds(len(self._utterance), self.sample_rate)

    def feed(self, pcm: bytes) -> list[VadEvent]:
        events: list[VadEvent] = []
        data = self._pending + pcm
        step = self._frame_bytes
        whole = len(data) - len(data) % step
        self._pending = data[whole:]
        for offset in range(0, whole, step):
            event = self._frame(data[offset : offset + step])
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> SpeechEnded | None:
        """End the current utterance now (the client said `end`)."""
        if not self.in_speech:
            return None
        return self._end(forced=True)

    def _frame(self, frame: bytes) -> VadEvent | None:
        voiced = self._vad.is_speech(frame, self.sample_rate)
        if not self.in_speech:
            self._preroll.append(frame)
            self._window.append(voiced)
            if sum(self._window) >= self._start_frames:
                self.in_speech = True
                self._silent_run = 0
                self._utterance = bytearray(b"".join(self._preroll))
                self._preroll.clear()
                self._window.clear()
                return SpeechStarted()
            return None
        self._utterance += frame
        self._silent_run = 0 if voiced else self._silent_run + 1
        if self._silent_run >= self._end_frames:
            return self._end(forced=False)
        if len(self._utterance) >= self._max_bytes:
            return self._end(forced=True)
        return None

    def _end(self, *, forced: bool) -> SpeechEnded:
        pcm = bytes(self._utterance)
        self._utterance = bytearray()
        self._silent_run = 0
        self.in_speech = False
        return SpeechEnded(pcm=pcm, forced=forced)
