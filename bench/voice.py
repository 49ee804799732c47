"""Voice agent: the platform's own added latency, end of user speech → first reply audio byte,
minus the time spent inside the backends. p50/p95 at 1 and 50 concurrent sessions.

One daphne process serves config.asgi; the deterministic voice TEST BACKEND
(tests/voice/asgi_backend.py, asyncio under uvicorn) runs in a process of its own and stamps
each request (received → answered; for text-to-speech → first audio byte written). Per turn:

    added = (first reply audio frame at the client − last utterance byte sent)
            − (speech-to-text + chat stream + text-to-speech to first byte, inside the backend)

so `added` holds our socket handling, VAD, routing, three HTTP round trips' client side, the
sentence split, the WAV parsing and the client's own receive. The utterance is sent in one
burst including the VAD's closing silence (VOICE_VAD_END_MS of it), so the VAD's deliberate
wait for that silence is not in the figure; it is stated beside it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_voice \\
      python bench/voice.py [--turns 30] [--sessions 50] [--session-turns 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._django import ROOT, setup  # noqa: E402

VAD_END_MS = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} did not listen on {port}")


def utterance_pcm() -> bytes:
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        sys.exit("needs Debian's espeak-ng and sox")
    with tempfile.TemporaryDirectory() as tmp:
        wav, raw = Path(tmp) / "u.wav", Path(tmp) / "u.raw"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), "What is the weather?"],
            check=True,
        )
        subprocess.run(
            ["sox", str(wav), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed", str(raw)],
            check=True,
        )
        speech = raw.read_bytes()
    # Cut espeak-ng's own trailing quiet, so only the closing silence below can end the
    # utterance: the VAD cannot fire before the client's last burst.
    samples = struct.unpack(f"<{len(speech) // 2}h", speech)
    last = max(i for i, v in enumerate(samples) if abs(v) > 300)
    return speech[: (last + 1) * 2]


# webrtcvad keeps calling frames voiced for a little while after speech stops (its hangover),
# so the silence that closes an utterance must be longer than VOICE_VAD_END_MS.
CLOSING_MS = VAD_END_MS + 300
CLOSING_SILENCE = b"\0\0" * int(16000 * CLOSING_MS / 1000)


def make_stack(backend_url: str) -> str:
    from apps.accounts.models import User
    from apps.catalog.models import Deployment, ModelTemplate, Replica
    from apps.catalog.services.deploy import deployment_key_issue

    user, _ = User.objects.get_or_create(email="voice-bench@example.com")
    Deployment.objects.filter(owner=user).update(status="STOPPED")
    key = ""
    for capability, category in (
        ("transcription", "audio-stt"),
        ("speech", "audio-tts"),
        ("chat", "llm"),
    ):
        template, _ = ModelTemplate.objects.get_or_create(
            slug=f"voice-bench-{capability}",
            defaults={
                "name": capability,
                "category": category,
                "capabilities": [capability],
                "served_model": capability,
                "image": "local/backends:1",
                "port": 8000,
                "recommended_gpu": "CPU",
                "gpu_count": 0,
            },
        )
        deployment = Deployment.objects.create(
            owner=user,
            template=template,
            name=capability,
            model_name=f"bench-{capability}",
            capabilities=[capability],
            image=template.image,
            port=8000,
            health_path="/health",
            gpu_model="CPU",
            gpu_count=0,
            status="READY",
            rate_limit_per_minute=0,  # unlimited: the bench measures latency, not limits
        )
        Replica.objects.create(
            deployment=deployment, port=8000, status="READY", base_url=backend_url
        )
        key = deployment_key_issue(deployment=deployment).raw
    return key


async def session(
    url: str,
    pcm: bytes,
    name: str,
    turns: int,
    results: list[dict],
    start: asyncio.Event,
    delay: float,
) -> None:
    import websockets

    await start.wait()
    await asyncio.sleep(delay)
    async with websockets.connect(url, open_timeout=60, max_size=None) as ws:
        await ws.send(json.dumps({"type": "config", "system_prompt": name}))
        for turn in range(1, turns + 1):
            # speech in real time (100 ms frames), then the closing silence in one burst
            for offset in range(0, len(pcm), 3200):
                await ws.send(pcm[offset : offset + 3200])
                await asyncio.sleep(0.1)
            await ws.send(CLOSING_SILENCE)
            sent_at = time.monotonic()
            first_audio = None
            while True:
                message = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(message, bytes):
                    if first_audio is None:
                        first_audio = time.monotonic()
                    continue
                event = json.loads(message)
                if event["type"] == "error":
                    raise RuntimeError(f"{name}: {event}")
                if event["type"] == "audio_end":
                    break
            results.append(
                {"session": name, "turn": turn, "sent_at": sent_at, "first_audio": first_audio}
            )


def backend_times(stamps: list[dict]) -> dict[tuple[str, int], float]:
    """(session name, turn) → seconds spent inside the backends before the first audio byte."""
    by_request: dict[str, dict[str, dict]] = {}
    for stamp in stamps:
        kinds = by_request.setdefault(stamp["request_id"], {})
        if stamp["kind"] not in kinds or stamp["start"] < kinds[stamp["kind"]]["start"]:
            kinds[stamp["kind"]] = stamp
    turns: dict[str, int] = {}
    out = {}
    for _request_id, kinds in sorted(by_request.items(), key=lambda kv: kv[1]["chat"]["start"]):
        chat, stt, tts = kinds["chat"], kinds["stt"], kinds["tts"]
        name = chat["system"]
        turns[name] = turns.get(name, 0) + 1
        inside = (stt["end"] - stt["start"]) + (chat["end"] - chat["start"])
        inside += tts["first_byte"] - tts["start"]
        out[(name, turns[name])] = inside
    return out


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_scenario(
    label: str,
    backend: subprocess.Popen,
    server: subprocess.Popen,
    server_port: int,
    backend_url: str,
    key: str,
    pcm: bytes,
    sessions: int,
    turns: int,
) -> None:
    results: list[dict] = []
    url = f"ws://127.0.0.1:{server_port}/ws/voice-agent?api_key={key}"
    tag = f"{label}-{time.monotonic_ns()}"

    async def main() -> None:
        start = asyncio.Event()
        # Sessions start spread over one turn's length, as independent callers would: 50
        # sessions, not 50 utterances ending in the same millisecond.
        spread = len(pcm) / 32000 + 1.0
        tasks = [
            asyncio.create_task(
                session(url, pcm, f"{tag}-s{i}", turns, results, start, spread * i / sessions)
            )
            for i in range(sessions)
        ]
        start.set()
        await asyncio.gather(*tasks)

    pids = {"daphne": server.pid, "test backend": backend.pid, "this client": os.getpid()}
    began, cpu = time.monotonic(), {name: cpu_seconds(pid) for name, pid in pids.items()}
    asyncio.run(main())
    wall = time.monotonic() - began
    cpu = {name: (cpu_seconds(pid) - cpu[name]) / wall * 100 for name, pid in pids.items()}
    inside = backend_times(fetch_stamps(backend_url, tag))
    added, totals, backend = [], [], []
    for result in results:
        total = result["first_audio"] - result["sent_at"]
        spent = inside[(result["session"], result["turn"])]
        totals.append(total * 1000)
        backend.append(spent * 1000)
        added.append((total - spent) * 1000)
    print(
        f"\n{label}: {sessions} concurrent session(s) x {turns} turns = {len(results)} turns "
        f"in {wall:.1f} s"
    )
    print(
        "  CPU (% of one core): "
        + ", ".join(f"{name} {pct:.0f}%" for name, pct in cpu.items())
        + f"; machine load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  platform-added latency  p50 {percentile(added, 50):6.1f} ms   "
        f"p95 {percentile(added, 95):6.1f} ms   max {max(added):6.1f} ms"
    )
    print(
        f"  end of speech → first audio byte  p50 {percentile(totals, 50):6.1f} ms   "
        f"p95 {percentile(totals, 95):6.1f} ms   (inside backends p50 "
        f"{statistics.median(backend):.1f} ms)"
    )


def fetch_stamps(backend_url: str, tag: str) -> list[dict]:
    """This scenario's stamps, once every turn has all three (the backend files a request's
    stamp just after its last byte, so the newest may lag the client by a moment)."""
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(f"{backend_url}/test/stamps", timeout=30) as response:  # noqa: S310
            ours = stamps_for([s for s in json.load(response)["stamps"] if s["kind"]], tag)
        kinds: dict[str, set[str]] = {}
        for stamp in ours:
            kinds.setdefault(stamp["request_id"], set()).add(stamp["kind"])
        if all(k == {"stt", "chat", "tts"} for k in kinds.values()) or time.monotonic() > deadline:
            return ours
        time.sleep(0.1)


def stamps_for(stamps: list[dict], tag: str) -> list[dict]:
    """This scenario's stamps: the chat requests name the session in the system prompt, and a
    turn's three requests share one X-Request-ID."""
    ours = {s["request_id"] for s in stamps if s["kind"] == "chat" and s["system"].startswith(tag)}
    return [s for s in stamps if s["request_id"] in ours]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30, help="turns of the 1-session run")
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--session-turns", type=int, default=5, help="turns per session at 50")
    parser.add_argument("--server-log", help="write daphne's DEBUG log (per-turn timings) here")
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    setup()
    pcm = utterance_pcm()

    backend_port, server_port = free_port(), free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "tests.voice.asgi_backend", "--port", str(backend_port)]
        + ["--speech-s-per-char", "0.02"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    backend_url = f"http://127.0.0.1:{backend_port}"
    env = {
        **os.environ,
        "VOICE_MAX_SESSIONS_PER_KEY": "1000",
        "VOICE_VAD_END_MS": str(VAD_END_MS),
        "RATE_LIMIT_ENABLED": "false",
    }
    server_log = subprocess.DEVNULL
    if args.server_log:
        env["LOG_LEVEL"] = "DEBUG"
        server_log = open(args.server_log, "wb")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(server_port)]
        + ["config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(backend_port, backend, "the test backend")
        wait_port(server_port, server, "daphne")
        key = make_stack(backend_url)
        print(
            f"one daphne process (config.asgi), voice test backend in its own process, "
            f"{os.cpu_count()} CPU cores; each turn: {len(pcm) / 32000:.2f} s of speech sent "
            f"in real time, then {CLOSING_MS} ms of closing silence in one frame (the VAD's "
            f"end-of-speech wait, {VAD_END_MS} ms of audio, is not counted below); concurrent "
            "sessions start spread over one turn's length"
        )
        run_scenario("warm-up", backend, server, server_port, backend_url, key, pcm, 1, 3)
        run_scenario(
            "1 session", backend, server, server_port, backend_url, key, pcm, 1, args.turns
        )
        run_scenario(
            f"{args.sessions} sessions",
            backend,
            server,
            server_port,
            backend_url,
            key,
            pcm,
            args.sessions,
            args.session_turns,
        )
    finally:
        for proc in (server, backend):
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
