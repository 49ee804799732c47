"""PCM and WAV framing. Audio on the sockets is 16-bit signed little-endian mono PCM."""

import io
import struct
import wave
from dataclasses import dataclass

SAMPLE_WIDTH = 2  # bytes per sample, s16le
# webrtcvad accepts only these rates; input audio must be at one of them.
SUPPORTED_INPUT_RATES = (8000, 16000, 32000, 48000)
DEFAULT_INPUT_RATE = 16000


def pcm_seconds(nbytes: int, sample_rate: int) -> float:
    return nbytes / (SAMPLE_WIDTH * sample_rate)


def wav_encode(pcm: bytes, sample_rate: int) -> bytes:
    """A mono s16le WAV file around `pcm` (what `/v1/audio/transcriptions` takes)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return out.getvalue()


@dataclass(frozen=True)
class WavFormat:
    sample_rate: int
    channels: int
    bits: int


class WavFormatError(ValueError):
    pass


class WavStream:
    """Parses a WAV byte stream as it arrives and yields its PCM payload in sample-aligned
    pieces. Streamed WAVs (espeak-ng `--stdout`) carry placeholder sizes, so everything after
    the `data` chunk header is payload. The header is bounded: a stream that has not reached
    `data` within MAX_HEADER bytes is rejected rather than buffered."""

    MAX_HEADER = 64 * 1024

    def __init__(self) -> None:
        self._head = b""
        self._carry = b""
        self.format: WavFormat | None = None
        self._in_data = False

    def feed(self, data: bytes) -> bytes:
        if not self._in_data:
            self._head += data
            data = self._parse_header()
            if not self._in_data:
                return b""
        data = self._carry + data
        frame = SAMPLE_WIDTH * (self.format.channels if self.format else 1)
        cut = len(data) - len(data) % frame
        self._carry = data[cut:]
        return data[:cut]

    def _parse_header(self) -> bytes:
        head = self._head
        if len(head) < 12:
            return b""
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavFormatError("not a RIFF/WAVE stream")
        pos = 12
        while len(head) >= pos + 8:
            chunk_id = head[pos : pos + 4]
            (size,) = struct.unpack("<I", head[pos + 4 : pos + 8])
            if chunk_id == b"data":
                if self.format is None:
                    raise WavFormatError("WAV data before its fmt chunk")
                self._in_data = True
                rest = head[pos + 8 :]
                self._head = b""
                return rest
            if len(head) < pos + 8 + size:
                break
            if chunk_id == b"fmt ":
                audio_format, channels, rate = struct.unpack("<HHI", head[pos + 8 : pos + 16])
                (bits,) = struct.unpack("<H", head[pos + 22 : pos + 24])
                if audio_format != 1 or bits != 16:
                    raise WavFormatError(f"need 16-bit PCM WAV, got format {audio_format}/{bits}")
                self.format = WavFormat(sample_rate=rate, channels=channels, bits=bits)
            pos += 8 + size + (size & 1)
        if len(head) > self.MAX_HEADER:
            raise WavFormatError("WAV header too long")
        return b""


def downmix_to_mono(pcm: bytes, channels: int) -> bytes:
    if channels == 1:
        return pcm
    count = len(pcm) // SAMPLE_WIDTH
    samples = struct.unpack(f"<{count}h", pcm[: count * SAMPLE_WIDTH])
    mono = [sum(samples[i : i + channels]) // channels for i in range(0, count, channels)]
    return struct.pack(f"<{len(mono)}h", *mono)
