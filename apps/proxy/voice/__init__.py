"""Real-time voice over WebSockets: `/ws/audio/transcriptions`, `/ws/audio/speech` and
`/ws/voice-agent` (protocol: shared/reference/voice-protocol.md).

Layout: `audio.py` (PCM/WAV framing), `vad.py` (server-side voice activity detection),
`backends.py` (OpenAI-compatible HTTP clients for speech-to-text, chat and text-to-speech),
`session.py` (the voice agent's turn state machine), `limits.py` (per-key concurrent sessions),
`auth.py` (deployment-key middleware), `consumers.py` (the three Channels consumers)."""
