"""A tiny deterministic TEST BACKEND for the voice tests and bench: one local HTTP server that
speaks the three OpenAI wire formats the voice consumers use, with exact, configurable answers.

- `POST /v1/audio/transcriptions` (multipart, a WAV `file`): `{"text": transcript}`.
- `POST /v1/chat/completions` with `stream: true`: SSE chunks of `reply` (default
  "You said: <last user message>."), word by word, `chunk_delay_s` apart, then a usage chunk.
- `POST /v1/audio/speech`: a streamed 22,050 Hz WAV (placeholder sizes, like espeak-ng
  `--stdout`) of a tone lasting `speech_s_per_char` per input character.

Every request is stamped (kind, X-Request-ID, start, first byte out, end; the bench subtracts
this time spent inside the backend)."""

import json
import math
import struct
import threading
import time
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TTS_RATE = 22050


@dataclass
class Stamp:
    kind: str
    request_id: str
    start: float
    first_byte: float = 0.0
    end: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class BackendConfig:
    transcript: str = "hello there"
    reply: str | None = None  # None: echo the last user message
    chunk_delay_s: float = 0.0
    stt_delay_s: float = 0.0
    tts_first_byte_delay_s: float = 0.0
    speech_s_per_char: float = 0.06
    tts_chunk_s: float = 0.1
    fail_stt: bool = False


def _tone_wav_header() -> bytes:
    placeholder = 0x7FFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, TTS_RATE, TTS_RATE * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", placeholder)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", placeholder)
    )


def _tone(samples: int, start: int) -> bytes:
    return struct.pack(
        f"<{samples}h",
        *(int(8000 * math.sin(2 * math.pi * 220 * (start + i) / TTS_RATE)) for i in range(samples)),
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """`GET /test/stamps`: every request's stamps so far (for a bench in another process;
        `time.monotonic()` is the system-wide monotonic clock on Linux)."""
        if self.path != "/test/stamps":
            self._json(404, {"error": {"message": "not found"}})
            return
        with self.server.lock:
            stamps = [
                {
                    "kind": s.kind,
                    "request_id": s.request_id,
                    "start": s.start,
                    "first_byte": s.first_byte,
                    "end": s.end,
                    "system": (s.detail.get("messages") or [{}])[0].get("content", ""),
                }
                for s in self.server.stamps
            ]
        self._json(200, {"stamps": stamps})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        stamp = Stamp(kind="", request_id=self.headers.get("X-Request-ID", ""), start=0.0)
        stamp.start = time.monotonic()
        body = self._body()
        config = self.server.config
        if self.path == "/v1/audio/transcriptions":
            stamp.kind = "stt"
            message = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
            )
            wav = b""
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    wav = part.get_payload(decode=True) or b""
            stamp.detail["audio_bytes"] = len(wav)
            if config.stt_delay_s:
                time.sleep(config.stt_delay_s)
            if config.fail_stt:
                self._json(500, {"error": {"message": "test backend told to fail"}})
            else:
                self._json(200, {"text": config.transcript})
            stamp.first_byte = stamp.end = time.monotonic()
        elif self.path == "/v1/chat/completions":
            stamp.kind = "chat"
            self._chat(json.loads(body), stamp)
        elif self.path == "/v1/audio/speech":
            stamp.kind = "tts"
            self._speech(json.loads(body), stamp)
        else:
            self._json(404, {"error": {"message": "not found"}})
            return
        with self.server.lock:
            self.server.stamps.append(stamp)

    def _chat(self, request: dict[str, Any], stamp: Stamp) -> None:
        config = self.server.config
        messages = request["messages"]
        stamp.detail["messages"] = messages
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        reply = config.reply if config.reply is not None else f"You said: {last_user}."
        words = reply.split(" ")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, word in enumerate(words):
            if index and config.chunk_delay_s:
                time.sleep(config.chunk_delay_s)
            text = word if index == 0 else " " + word
            chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
            self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            if index == 0:
                stamp.first_byte = time.monotonic()
        usage = {"prompt_tokens": sum(len(m["content"].split()) for m in messages)}
        usage["completion_tokens"] = len(words)
        self._chunk(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")
        stamp.end = time.monotonic()

    def _speech(self, request: dict[str, Any], stamp: Stamp) -> None:
        config = self.server.config
        text = request["input"]
        stamp.detail["input"] = text
        total = int(len(text) * config.speech_s_per_char * TTS_RATE)
        step = max(1, int(config.tts_chunk_s * TTS_RATE))
        if config.tts_first_byte_delay_s:
            time.sleep(config.tts_first_byte_delay_s)
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(_tone_wav_header())
        try:
            for start in range(0, total, step):
                self._chunk(_tone(min(step, total - start), start))
                if not stamp.first_byte:
                    stamp.first_byte = time.monotonic()
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            stamp.detail["client_went_away"] = True
        stamp.end = time.monotonic()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 50 sessions connect at once; the default backlog is 5
    config: BackendConfig
    stamps: list[Stamp]
    lock: threading.Lock


class VoiceTestBackend:
    """Start with `with VoiceTestBackend(config) as backend:`; `backend.url` is its base URL."""

    def __init__(self, config: BackendConfig | None = None, port: int = 0) -> None:
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.config = config or BackendConfig()
        self.server.stamps = []
        self.server.lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def config(self) -> BackendConfig:
        return self.server.config

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def stamps(self) -> list[Stamp]:
        with self.server.lock:
            return list(self.server.stamps)

    def __enter__(self) -> "VoiceTestBackend":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    """`python -m tests.voice.backend --port N [--speech-s-per-char S] ...`: serve until
    killed (the bench runs it in a process of its own)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.voice.backend")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transcript", default="hello there")
    parser.add_argument("--stt-delay", type=float, default=0.0)
    parser.add_argument("--chunk-delay", type=float, default=0.0)
    parser.add_argument("--speech-s-per-char", type=float, default=0.06)
    args = parser.parse_args()
    config = BackendConfig(
        transcript=args.transcript,
        stt_delay_s=args.stt_delay,
        chunk_delay_s=args.chunk_delay,
        speech_s_per_char=args.speech_s_per_char,
    )
    backend = VoiceTestBackend(config, port=args.port)
    print(f"voice test backend on {backend.url}", flush=True)
    backend.server.serve_forever()


if __name__ == "__main__":
    main()
