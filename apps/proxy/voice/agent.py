"""The voice agent's session: listen, think, speak (`/ws/voice-agent`).

States: LISTENING (audio goes through VAD) → a finished utterance starts a turn: TRANSCRIBING
(speech-to-text) → THINKING (the chat model streams `response` deltas; each finished sentence is
handed to text-to-speech at once) → SPEAKING (paced reply audio between `audio_start` and
`audio_end`) → LISTENING. The user starting to speak during a turn is barge-in: the turn is
cancelled at once (no further audio leaves), `interrupted` is sent, and the new speech is
heard. A turn cancelled before its transcript went out is not announced: its audio is kept
and heard together with the continuation (the speaker only paused).

History: the system prompt, then user and assistant messages (an interrupted reply keeps what
was generated), trimmed to the last VOICE_HISTORY_MESSAGES and VOICE_HISTORY_CHARS."""

import asyncio
import contextlib
import enum
import logging
import re
import time
import uuid
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from apps.proxy.routing import DeploymentRoute
from apps.proxy.voice import backends
from apps.proxy.voice.audio import DEFAULT_INPUT_RATE
from apps.proxy.voice.calls import CallRecord, fatal_from, stream_replica, transcribe_utterance
from apps.proxy.voice.messages import (
    MAX_NAME_CHARS,
    MAX_SYSTEM_PROMPT_CHARS,
    FatalError,
    MessageError,
    VoiceConf,
    optional_sample_rate,
    optional_str,
)
from apps.proxy.voice.routes import LiveRoutes
from apps.proxy.voice.speech_out import AudioStream, ClientLink
from apps.proxy.voice.vad import SpeechEnded, SpeechStarted

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Answer in one or two short spoken sentences."
)
# A sentence ends at . ! ? (and closing quotes/brackets) followed by space, or at a newline.
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+|\n+")
_LONGEST_SENTENCE = 300


def split_sentences(buffer: str) -> tuple[list[str], str]:
    """The finished sentences in `buffer` and what is left over. A run-on text longer than
    _LONGEST_SENTENCE is cut at its last space, so speech never waits for a full stop."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(buffer):
        sentence = buffer[start : match.end()].strip()
        if sentence:
            sentences.append(sentence)
        start = match.end()
    rest = buffer[start:]
    while len(rest) > _LONGEST_SENTENCE and " " in rest[1:_LONGEST_SENTENCE]:
        cut = rest.rindex(" ", 1, _LONGEST_SENTENCE)
        if rest[:cut].strip():
            sentences.append(rest[:cut].strip())
        rest = rest[cut + 1 :]
    return sentences, rest


class State(enum.StrEnum):
    LISTENING = "listening"
    TRANSCRIBING = "transcribing"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True)
class AgentRoutes:
    stt: DeploymentRoute
    chat: DeploymentRoute
    tts: DeploymentRoute


@dataclass
class Turn:
    number: int
    pcm: bytes
    ended_at: float
    task: asyncio.Task[None] | None = None
    transcript_sent: bool = False
    reply_parts: list[str] = field(default_factory=list)
    reply_recorded: bool = False
    marks: dict[str, float] = field(default_factory=dict)  # step → monotonic time

    def mark(self, step: str) -> None:
        self.marks.setdefault(step, time.monotonic())

    def timings(self) -> str:
        return ", ".join(
            f"{step} +{(at - self.ended_at) * 1000:.1f} ms" for step, at in self.marks.items()
        )


class VoiceAgent:
    def __init__(
        self,
        *,
        link: ClientLink,
        routes: LiveRoutes[AgentRoutes],
        conf: VoiceConf,
        session_id: str,
    ) -> None:
        self.link = link
        self.routes = routes
        self.conf = conf
        self.session_id = session_id
        self.system_prompt = DEFAULT_SYSTEM_PROMPT
        self.voice: str | None = None
        self.language: str | None = None
        self.sample_rate = DEFAULT_INPUT_RATE
        self.vad = self.conf.detector(self.sample_rate)
        self.history: list[dict[str, str]] = []
        self.state = State.LISTENING
        self.turn: Turn | None = None
        self.turns = 0
        self._carry = b""  # a cancelled, unannounced turn's audio, heard with what follows

    @property
    def hearing_speech(self) -> bool:
        return self.vad.in_speech

    @property
    def busy(self) -> bool:
        return self.turn is not None and self.turn.task is not None and not self.turn.task.done()

    async def on_message(self, message: dict[str, Any]) -> None:
        if message["type"] != "config":
            raise MessageError(
                "unknown_type", f"Unknown message type {message['type']!r}; expected 'config'."
            )
        prompt = optional_str(message, "system_prompt", max_chars=MAX_SYSTEM_PROMPT_CHARS)
        voice = optional_str(message, "voice", max_chars=MAX_NAME_CHARS)
        language = optional_str(message, "language", max_chars=16)
        rate = optional_sample_rate(message)
        # Validated whole before anything changes.
        if prompt is not None:
            self.system_prompt = prompt
        if voice is not None:
            self.voice = voice or None
        if language is not None:
            self.language = language or None
        if rate is not None and rate != self.sample_rate:
            self.sample_rate = rate
            self.vad = self.conf.detector(self.sample_rate)

    async def on_audio(self, pcm: bytes) -> None:
        for event in self.vad.feed(pcm):
            if isinstance(event, SpeechStarted):
                self.routes.refresh()  # ready (and current) by the time the user stops
                await self._barge_in()
            elif isinstance(event, SpeechEnded):
                self._start_turn(event.pcm)

    async def close(self) -> None:
        await self.routes.close()
        turn = self.turn
        if turn is not None and turn.task is not None and not turn.task.done():
            turn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn.task

    # --- turns ---

    def _start_turn(self, pcm: bytes) -> None:
        pcm, self._carry = self._carry + pcm, b""
        self.turns += 1
        turn = Turn(number=self.turns, pcm=pcm, ended_at=time.monotonic())
        turn.task = asyncio.create_task(self._run_turn(turn))
        self.turn = turn

    async def _barge_in(self) -> None:
        turn = self.turn
        if turn is None or turn.task is None or turn.task.done():
            return
        turn.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await turn.task
        self.state = State.LISTENING
        if turn.transcript_sent:
            await self.link.send_event({"type": "interrupted"})
        else:
            self._carry = turn.pcm[-self._carry_limit() :]

    def _carry_limit(self) -> int:
        return int(self.conf.max_utterance_s * self.sample_rate) * 2

    async def _run_turn(self, turn: Turn) -> None:
        request_id = str(uuid.uuid4())  # one id for the turn's three backend calls
        try:
            routes = await self.routes.get()
            turn.mark("routed")
            self.state = State.TRANSCRIBING
            text = await transcribe_utterance(
                route=routes.stt,
                pcm=turn.pcm,
                sample_rate=self.sample_rate,
                language=self.language,
                request_id=request_id,
                endpoint="ws/voice-agent:transcription",
            )
            turn.mark("transcribed")
            await self.link.send_event({"type": "transcription", "text": text, "final": True})
            turn.transcript_sent = True
            if text:
                self._remember({"role": "user", "content": text})
                await self._reply(turn, routes, request_id)
        except asyncio.CancelledError:
            raise
        except FatalError as exc:
            await self.link.fail(code=exc.code, message=exc.message, close_code=exc.close_code)
        except Exception as exc:  # backend and routing failures end the session
            if not isinstance(exc, backends.BackendError | FatalError):
                logger.exception("voice-agent turn %s failed", request_id)
            fatal = fatal_from(exc)
            await self.link.fail(
                code=fatal.code, message=fatal.message, close_code=fatal.close_code
            )
        finally:
            logger.debug("voice turn %s: %s", request_id, turn.timings())
            if turn.reply_parts and not turn.reply_recorded:
                self._remember({"role": "assistant", "content": "".join(turn.reply_parts)})
            if self.turn is turn:
                self.state = State.LISTENING
            self.routes.refresh()  # the cache re-reads in the background before the next turn

    async def _reply(self, turn: Turn, routes: AgentRoutes, request_id: str) -> None:
        self.state = State.THINKING
        messages = [{"role": "system", "content": self.system_prompt}, *self.history]
        audio = AudioStream(
            self.link, audio_id=f"turn-{turn.number}", lead_s=self.conf.audio_lead_s
        )
        sentences: asyncio.Queue[str | None] = asyncio.Queue()  # bounded by max_reply_tokens
        speaker = asyncio.create_task(self._speak(sentences, audio, turn, routes, request_id))
        record = CallRecord(
            endpoint="ws/voice-agent:chat", route=routes.chat, started=time.monotonic()
        )
        usage = backends.ChatUsage()
        pending = ""
        try:
            async with aclosing(
                stream_replica(
                    routes.chat,
                    record,
                    lambda base_url: backends.chat_stream(
                        base_url=base_url,
                        model=routes.chat.model_name,
                        messages=messages,
                        max_tokens=self.conf.max_reply_tokens,
                        request_id=request_id,
                        usage=usage,
                    ),
                )
            ) as deltas:
                async for delta in deltas:
                    turn.mark("first token")
                    turn.reply_parts.append(delta)
                    await self.link.send_event({"type": "response", "text": delta, "delta": True})
                    ready, pending = split_sentences(pending + delta)
                    for sentence in ready:
                        turn.mark("first sentence")
                        sentences.put_nowait(sentence)
            if pending.strip():
                turn.mark("first sentence")
                sentences.put_nowait(pending.strip())
            sentences.put_nowait(None)
            whole = "".join(turn.reply_parts)
            await self.link.send_event({"type": "response", "text": whole, "delta": False})
            self._remember({"role": "assistant", "content": whole})
            turn.reply_recorded = True
            await speaker
        except Exception as exc:
            record.error = exc.__class__.__name__
            raise
        finally:
            record.prompt_tokens = usage.prompt_tokens
            record.completion_tokens = usage.completion_tokens
            record.log()
            if not speaker.done():
                speaker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await speaker

    async def _speak(
        self,
        sentences: "asyncio.Queue[str | None]",
        audio: AudioStream,
        turn: Turn,
        routes: AgentRoutes,
        request_id: str,
    ) -> None:
        while (sentence := await sentences.get()) is not None:
            self.state = State.SPEAKING
            await audio.speak(
                route=routes.tts,
                text=sentence,
                voice=self.voice,
                request_id=request_id,
                endpoint="ws/voice-agent:speech",
            )
            if audio.first_audio_at is not None:
                turn.marks.setdefault("first audio", audio.first_audio_at)
        await audio.finish()

    def _remember(self, message: dict[str, str]) -> None:
        self.history.append(message)
        del self.history[: max(0, len(self.history) - self.conf.history_messages)]
        while len(self.history) > 1 and sum(len(m["content"]) for m in self.history) > (
            self.conf.history_chars
        ):
            del self.history[0]
