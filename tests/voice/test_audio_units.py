"""VAD, WAV stream parsing and sentence splitting, without a server."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.proxy.voice.agent import split_sentences
from apps.proxy.voice.audio import WavFormatError, WavStream, wav_encode
from apps.proxy.voice.vad import SpeechEnded, SpeechStarted, UtteranceDetector
from tests.voice.conftest import silence, spoken_pcm


def test_vad_cuts_speech_into_one_utterance_per_pause(tmp_path):
    speech = spoken_pcm("Hello there, this is a test.", tmp_path)
    detector = UtteranceDetector(sample_rate=16000, end_ms=500)

    events = []
    for part in (silence(0.5), speech, silence(1.0), speech, silence(1.0)):
        for offset in range(0, len(part), 1000):  # odd-sized chunks: framing is internal
            events += detector.feed(part[offset : offset + 1000])

    kinds = [type(e) for e in events]
    assert kinds == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded]
    for ended in (events[1], events[3]):
        assert not ended.forced
        # the utterance holds the speech (with pre-roll and the closing silence), no more
        assert len(speech) * 0.8 < len(ended.pcm) < len(speech) + 2 * 16000 * 2
    assert not detector.in_speech


def test_vad_bounds_an_utterance_that_never_pauses(tmp_path):
    speech = spoken_pcm("Talking without any pause at all for a long while.", tmp_path)
    detector = UtteranceDetector(sample_rate=16000, max_utterance_s=1.0)
    events = detector.feed(speech)
    forced = [e for e in events if isinstance(e, SpeechEnded) and e.forced]
    assert forced and all(len(e.pcm) <= 16000 * 2 for e in forced)


def test_vad_flush_ends_the_current_utterance(tmp_path):
    detector = UtteranceDetector(sample_rate=16000)
    assert detector.flush() is None
    detector.feed(spoken_pcm("Hello.", tmp_path))
    assert detector.in_speech
    ended = detector.flush()
    assert ended is not None and ended.forced and ended.pcm
    assert not detector.in_speech


def test_vad_ignores_silence_and_refuses_unsupported_rates():
    detector = UtteranceDetector(sample_rate=8000)
    assert detector.feed(silence(2.0, rate=8000)) == []
    with pytest.raises(ValueError, match="sample_rate"):
        UtteranceDetector(sample_rate=44100)


@given(st.binary(max_size=4000).map(lambda b: b[: len(b) - len(b) % 2]), st.integers(1, 97))
def test_wav_stream_gives_back_the_samples_whatever_the_chunking(pcm, step):
    wav = wav_encode(pcm, 22050)
    stream = WavStream()
    out = b"".join(stream.feed(wav[i : i + step]) for i in range(0, len(wav), step))
    assert out == pcm
    assert stream.format is not None and stream.format.sample_rate == 22050


def test_wav_stream_takes_placeholder_sizes_and_skips_other_chunks():
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
    header += b"fmt " + struct.pack("<I", 16) + fmt
    header += b"LIST" + struct.pack("<I", 3) + b"abc\0"  # odd size: padded
    header += b"data" + struct.pack("<I", 0xFFFFFFFF)
    stream = WavStream()
    assert stream.feed(header + b"\x01\x02\x03") == b"\x01\x02"
    assert stream.feed(b"\x04") == b"\x03\x04"


def test_wav_stream_refuses_what_is_not_16_bit_pcm_wav():
    with pytest.raises(WavFormatError):
        WavStream().feed(b"ID3\x03" + b"\0" * 40)
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)  # float32
    wav = b"RIFF" + b"\0" * 4 + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    with pytest.raises(WavFormatError, match="16-bit"):
        WavStream().feed(wav + b"data" + b"\0" * 4)


def test_sentences_are_cut_as_soon_as_they_end():
    assert split_sentences("Hello there. How") == (["Hello there."], "How")
    assert split_sentences("Really?! Yes.\nNext") == (["Really?!", "Yes."], "Next")
    assert split_sentences('He said "stop." Then') == (['He said "stop."'], "Then")
    assert split_sentences("No boundary yet") == ([], "No boundary yet")
    sentences, rest = split_sentences("word " * 80)
    assert sentences and len(sentences[0]) <= 300 and rest


@given(st.text(max_size=600))
def test_splitting_loses_no_words(text):
    sentences, rest = split_sentences(text)
    assert " ".join(sentences + [rest]).split() == text.split()
