"""Client messages: validation of the JSON frames, and the errors sessions raise.

A malformed message is a `MessageError`: the consumer answers it with an `error` event and
nothing changes. A `FatalError` ends the session: an `error` event, then the close code."""

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.proxy.voice.audio import SUPPORTED_INPUT_RATES
from apps.proxy.voice.vad import UtteranceDetector

MAX_TEXT_CHARS = 4096
MAX_SYSTEM_PROMPT_CHARS = 8000
MAX_NAME_CHARS = 100

CLOSE_BACKEND_FAILURE = 1011
CLOSE_BAD_KEY = 4401
CLOSE_IDLE = 4408
CLOSE_NOT_READY = 4409
CLOSE_RATE_LIMITED = 4429


class MessageError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class FatalError(Exception):
    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code


def parse_text_frame(text: str) -> dict[str, Any]:
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise MessageError("invalid_json", f"Text frames must be JSON objects: {exc}.") from exc
    if not isinstance(message, dict):
        raise MessageError("invalid_message", "Text frames must be JSON objects with a 'type'.")
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        raise MessageError("invalid_message", "The message has no 'type' (a string).")
    return message


def optional_str(message: dict[str, Any], field: str, *, max_chars: int) -> str | None:
    value = message.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError("invalid_field", f"'{field}' must be a string.")
    if len(value) > max_chars:
        raise MessageError("invalid_field", f"'{field}' is longer than {max_chars} characters.")
    return value


def required_text(message: dict[str, Any], field: str) -> str:
    value = optional_str(message, field, max_chars=MAX_TEXT_CHARS)
    if value is None or not value.strip():
        raise MessageError("invalid_field", f"'{field}' is required (non-empty text).")
    return value


def optional_sample_rate(message: dict[str, Any]) -> int | None:
    value = message.get("sample_rate")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in SUPPORTED_INPUT_RATES:
        rates = ", ".join(str(rate) for rate in SUPPORTED_INPUT_RATES)
        raise MessageError("invalid_field", f"'sample_rate' must be one of {rates}.")
    return value


def check_text_frame(text: str) -> None:
    limit = MAX_SYSTEM_PROMPT_CHARS + 4096  # the largest message: a config with its prompt
    if len(text) > limit:
        raise MessageError(
            "frame_too_large",
            f"Text frames may be at most {limit} characters; this one was dropped.",
        )


def check_audio_frame(data: bytes) -> None:
    limit = settings.VOICE_MAX_FRAME_BYTES
    if len(data) > limit:
        raise MessageError(
            "frame_too_large", f"Audio frames may be at most {limit} bytes; this one was dropped."
        )
    if len(data) % 2:
        raise MessageError(
            "invalid_audio", "Audio must be 16-bit PCM: a frame of an odd byte count was dropped."
        )


@dataclass(frozen=True)
class VoiceConf:
    """The VOICE_* settings a session reads, taken once when it starts."""

    idle_timeout_s: float
    audio_lead_s: float
    vad_aggressiveness: int
    vad_end_ms: int
    max_utterance_s: float
    partial_interval_s: float
    max_reply_tokens: int
    history_messages: int
    history_chars: int
    pending_utterances: int
    pending_speeches: int

    def detector(self, sample_rate: int) -> UtteranceDetector:
        """A fresh end-of-utterance detector with these VAD settings."""
        return UtteranceDetector(
            sample_rate=sample_rate,
            aggressiveness=self.vad_aggressiveness,
            end_ms=self.vad_end_ms,
            max_utterance_s=self.max_utterance_s,
        )

    @classmethod
    def load(cls) -> "VoiceConf":
        return cls(
            idle_timeout_s=settings.VOICE_IDLE_TIMEOUT_S,
            audio_lead_s=settings.VOICE_AUDIO_LEAD_S,
            vad_aggressiveness=settings.VOICE_VAD_AGGRESSIVENESS,
            vad_end_ms=settings.VOICE_VAD_END_MS,
            max_utterance_s=settings.VOICE_MAX_UTTERANCE_S,
            partial_interval_s=settings.VOICE_PARTIAL_INTERVAL_S,
            max_reply_tokens=settings.VOICE_MAX_REPLY_TOKENS,
            history_messages=settings.VOICE_HISTORY_MESSAGES,
            history_chars=settings.VOICE_HISTORY_CHARS,
            pending_utterances=settings.VOICE_PENDING_UTTERANCES,
            pending_speeches=settings.VOICE_PENDING_SPEECHES,
        )
