"""Keystroke round-trip of the browser terminal: browser socket → our web process (Channels) →
channel layer (Redis) → the agent's socket → `docker exec` TTY → the shell's echo → back.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_connect \
    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/terminal.py \
        --terminals 20 --rate 10 --seconds 15

One web process of ours (daphne, the Procfile's), a real agent process (`python -m agent`,
heartbeat 1 s) on the real Docker engine, one pod running `local/busybox:1` (made by the agent
tests' fixture, or `docker import`). `--terminals` sockets are opened on it, as its owner (a
signed-in session), each with its own `docker exec` shell. Then every terminal types one
character at a time at `--rate` keystrokes per second for `--seconds`, all terminals at once;
a keystroke's round trip is from sending the character to receiving the frame that echoes it.
The line is cleared (Ctrl-U) every 40 characters, not timed. Printed: p50 / p99 / max over all
keystrokes, and the load average (this machine's cores are shared with everything else that
runs). Every connection goes to 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._connect import (  # noqa: E402
    BOOTSTRAP,
    bench_user,
    django_setup,
    finish_old_pods,
    free_port,
    load_average,
    new_pod_row,
    pct,
    require_bench_database,
    server_env,
    session_cookie,
    start,
    start_daphne,
    wait_http,
)

IMAGE = "local/busybox:1"
CLEAR_EVERY = 40


def wait(check, what: str, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def start_pod(since: float) -> tuple[str, str]:
    """Wait for the agent's node, start a busybox pod on it; (pod id, session cookie)."""
    from datetime import UTC, datetime

    from apps.nodes import services as node_services
    from apps.nodes.models import Node, NodeStatus
    from apps.pods.models import Pod, PodStatus

    registered_after = datetime.fromtimestamp(since, tz=UTC)
    node = wait(
        lambda: Node.objects.filter(
            status=NodeStatus.ONLINE, registered_at__gte=registered_after
        ).first(),
        "the agent's node ONLINE",
    )
    user = bench_user("bench-terminal@example.com")
    finish_old_pods(user)
    pod = new_pod_row(user, node, image=IMAGE, command=["sleep", "3600"], status="SCHEDULED")
    node_services.workload_start(
        node=node,
        pod_id=pod.pk,
        spec={"image": IMAGE, "command": ["sleep", "3600"], "network_mode": "none"},
    )
    wait(
        lambda: Pod.objects.filter(pk=pod.pk, status=PodStatus.RUNNING).exists(),
        "the pod RUNNING",
    )
    return str(pod.pk), session_cookie(user)


async def open_terminal(url: str, cookie: str, origin: str):  # type: ignore[no-untyped-def]
    from websockets.asyncio.client import connect

    socket = await connect(
        url, additional_headers={"Cookie": cookie}, origin=origin, compression=None
    )
    while True:
        frame = await asyncio.wait_for(socket.recv(), 120)
        if isinstance(frame, str) and json.loads(frame).get("state") == "open":
            break
        if isinstance(frame, str) and json.loads(frame).get("state") in ("error", "closed"):
            raise SystemExit(f"terminal refused: {frame}")
    await drain(socket, 0.5)  # the prompt
    return socket


async def drain(socket, quiet_s: float) -> None:  # type: ignore[no-untyped-def]
    while True:
        try:
            await asyncio.wait_for(socket.recv(), quiet_s)
        except TimeoutError:
            return


async def typist(socket, rate: float, seconds: float, out: list[float]) -> None:  # type: ignore[no-untyped-def]
    interval = 1.0 / rate
    deadline = time.monotonic() + seconds
    typed = 0
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        key = b"abcdefghijklmnopqrstuvwxyz"[typed % 26 : typed % 26 + 1]
        sent = time.perf_counter()
        await socket.send(key)
        while True:
            frame = await asyncio.wait_for(socket.recv(), 30)
            if isinstance(frame, bytes) and key in frame:
                break
        out.append((time.perf_counter() - sent) * 1000)
        typed += 1
        if typed % CLEAR_EVERY == 0:
            await socket.send(b"\x15")  # Ctrl-U: clear the line (not timed)
            await drain(socket, 0.2)
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def run(base: str, pod_id: str, cookie: str, terminals: int, rate: float, seconds: float):  # type: ignore[no-untyped-def]
    url = base.replace("http://", "ws://") + f"/ws/pods/{pod_id}/terminal"
    sockets = await asyncio.gather(*(open_terminal(url, cookie, base) for _ in range(terminals)))
    print(f"{len(sockets)} terminals open; typing for {seconds:g} s; {load_average()}")
    out: list[float] = []
    try:
        await asyncio.gather(*(typist(s, rate, seconds, out) for s in sockets))
    finally:
        await asyncio.gather(*(s.close() for s in sockets))
    return out


def remove_container(pod_id: str) -> None:
    import docker  # type: ignore[import-untyped, unused-ignore]

    client = docker.from_env()
    for container in client.containers.list(all=True, filters={"label": f"gco.pod_id={pod_id}"}):
        container.remove(force=True)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10, help="keystrokes/s per terminal")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--agent-log", type=Path, help="write the agent's log here")
    parser.add_argument("--server-log", type=Path, help="write the web process's log here")
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    args = parser.parse_args()
    require_bench_database()
    django_setup()

    env = server_env(NODE_HEARTBEAT_INTERVAL="1", POD_TERMINAL_IDLE_TIMEOUT_S="600")
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    if args.server == "daphne":
        web = start_daphne(web_port, env, args.server_log)
    else:
        web = start(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port",
             str(web_port), "--no-access-log", "--log-level", "warning"],
            env,
        )  # fmt: skip
    state = tempfile.mkdtemp(prefix="bench-terminal-agent-")
    since = time.time() - 1
    agent = None
    pod_id = ""
    try:
        wait_http(f"{base}/healthz")
        agent = start(
            [sys.executable, "-m", "agent", "--server", base, "--bootstrap-token", BOOTSTRAP,
             "--state-dir", state, "--network-mode", "none"],
            env,
            args.agent_log,
        )  # fmt: skip
        pod_id, cookie = start_pod(since)
        out = asyncio.run(run(base, pod_id, cookie, args.terminals, args.rate, args.seconds))
        print(
            f"keystroke round trip, {args.terminals} terminals x {args.rate:g}/s: "
            f"p50 {pct(out, 0.5):.2f} ms, p99 {pct(out, 0.99):.2f} ms, max {max(out):.2f} ms "
            f"({len(out)} keystrokes); {load_average()}"
        )
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=60)
        if pod_id:
            remove_container(pod_id)
        web.terminate()
        web.wait(timeout=30)


if __name__ == "__main__":
    main()
