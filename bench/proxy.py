"""The /v1 proxy's added latency over calling the backend directly, its throughput per web
process, and its CPU time per request; each figure printed next to its target. About a minute.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_proxy \
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/proxy.py [--server uvicorn]
        [--profile]

One echo test backend (`python -m backends echo-test`, uvicorn, one process) and ONE web process
of ours on 127.0.0.1: `--server uvicorn` (the Procfile's `/v1` server: uvicorn with uvloop and
httptools, `config.asgi:application`) or `--server daphne` (the site's, which served `/v1`
before). A deployment with one READY replica on that backend. The load generator is one asyncio
process speaking raw HTTP/1.1 keep-alive (so the client costs little). Phases:

1. added latency at 1 client: the client alternates a request straight to the backend and the
   same request through the proxy (same backend, same moment), non-streaming (whole answer) and
   streaming (first chunk); added = proxied p50 - direct p50;
2. closed-loop throughput at 1 / 10 / 100 clients, proxied only: requests/s, and the web
   process's CPU time per request (from /proc: user + system), which does not depend on what
   else runs on the machine, with the requests/s it makes for a core of its own (1 s / that);
3. paced, 100 clients: open loop (each request leaves on schedule, whether or not the previous
   one has been answered) at `--paced-share` of the throughput phase 2 measured at 100 clients,
   alternating direct and proxied as in 1; added p99 = proxied p99 - direct p99.

`--profile` samples the web process with py-spy during phase 2's 100-client run and prints the
functions with the most CPU samples (own and with what they call).
Everything shares this machine's cores (client, backend, web process and whatever else runs):
the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = "bench-echo"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "one two three four five six"}]}
ERRORS = (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError)

# Targets (issue 17).
TARGET_ADDED_P50_MS = 1.0
TARGET_RPS = 1000.0
TARGET_PACED_ADDED_P99_MS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def setup_deployment(backend_url: str) -> str:
    """A READY deployment of the echo template on `backend_url`; its raw key."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from apps.accounts.models import User
    from apps.catalog.models import Deployment, ModelTemplate, Replica
    from apps.catalog.services.deploy import deployment_key_issue
    from apps.catalog.services.templates import templates_seed

    call_command("migrate", verbosity=0)
    templates_seed()
    user, _ = User.objects.get_or_create(email="bench-proxy@example.com")
    template = ModelTemplate.objects.get(slug="local-echo-test")
    Deployment.objects.filter(owner=user).update(status="STOPPED")
    deployment = Deployment.objects.create(
        owner=user,
        template=template,
        name=MODEL,
        model_name=MODEL,
        capabilities=template.capabilities,
        image=template.image,
        port=0,
        health_path="/health",
        gpu_model="CPU",
        gpu_count=0,
        status="READY",
        rate_limit_per_minute=100_000_000,
    )
    Replica.objects.create(
        deployment=deployment,
        port=int(backend_url.rsplit(":", 1)[1]),
        status="READY",
        base_url=backend_url,
    )
    return deployment_key_issue(deployment=deployment).raw


def wait_http(port: int, path: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port}{path}")


# --- a small HTTP/1.1 keep-alive client --------------------------------------------------------


class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[float, float]:
        """Send `raw`; (seconds to the first body byte, seconds to the end)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        started = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {head[:200]!r}")
        headers = head.lower()
        first = None
        if b"transfer-encoding: chunked" in headers:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                if first is None and size:
                    first = time.perf_counter()
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            length = int(headers.split(b"content-length: ")[1].split(b"\r\n")[0])
            await self.reader.readexactly(length)
            first = time.perf_counter()
        end = time.perf_counter()
        if b"connection: close" in headers:
            self.writer.close()
            self.writer = None
        return (first or end) - started, end - started

    def drop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


def raw_request(port: int, body: dict, key: str | None) -> bytes:
    payload = json.dumps(body).encode()
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))] * 1000


async def paired(
    backend: int, proxy: int, key: str, clients: int, seconds: float, stream: bool, rate: float
) -> dict[str, list[float]]:
    """`clients` clients, each alternating a direct and a proxied request. `rate` 0: back to
    back; else open loop: the clients together start `rate` requests per second (each client
    on a fixed schedule, however long its previous request took; a client whose request is
    late starts the next one as soon as it is free)."""
    body = {**BODY, "stream": stream}
    raws = {"direct": raw_request(backend, body, None), "proxy": raw_request(proxy, body, key)}
    out: dict[str, list[float]] = {"direct": [], "proxy": [], "errors": []}
    pick = 0 if stream else 1  # time to the first chunk, or to the end
    conns = [{"direct": Conn(backend), "proxy": Conn(proxy)} for _ in range(clients)]

    async def warm(conn: Conn, raw: bytes) -> None:
        try:
            await conn.request(raw)
        except ERRORS:
            conn.drop()

    # Every connection is opened first (not timed): steady state, as an SDK's pool would be.
    await asyncio.gather(*(warm(c[name], raws[name]) for c in conns for name in raws))
    period = clients / rate if rate else 0.0
    start = time.monotonic()
    stop = start + seconds

    async def client(index: int) -> None:
        due = start + period * index / clients  # spread the clients' phases
        turn = index % 2
        while True:
            if period:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += period
            if time.monotonic() >= stop:
                return
            name = ("direct", "proxy")[turn]
            turn ^= 1
            try:
                out[name].append((await conns[index][name].request(raws[name]))[pick])
            except ERRORS as exc:
                out["errors"].append(0.0)
                if len(out["errors"]) < 4:
                    print(f"    error ({name}): {exc}")
                conns[index][name].drop()

    await asyncio.gather(*(client(i) for i in range(clients)))
    for c in conns:
        for conn in c.values():
            conn.drop()
    return out


async def closed_loop(proxy: int, key: str, clients: int, seconds: float) -> tuple[int, int]:
    raw = raw_request(proxy, BODY, key)
    done = errors = 0
    conns = [Conn(proxy) for _ in range(clients)]
    await asyncio.gather(*(c.request(raw) for c in conns), return_exceptions=True)
    stop = time.monotonic() + seconds

    async def client(conn: Conn) -> None:
        nonlocal done, errors
        while time.monotonic() < stop:
            try:
                await conn.request(raw)
                done += 1
            except ERRORS:
                errors += 1
                conn.drop()

    await asyncio.gather(*(client(c) for c in conns))
    for conn in conns:
        conn.drop()
    return done, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own servers
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def web_command(server: str, port: int) -> list[str]:
    if server == "daphne":
        daphne = str(Path(sys.executable).with_name("daphne"))
        return [daphne, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    return [
        sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning", "--lifespan", "off",
    ]  # fmt: skip


def _frame(raw: str) -> tuple[str, str]:
    """py-spy's `func (path/file.py:line)`: (`func (file.py)`, the frame's component)."""
    name, _, where = raw.partition(" (")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    if parts[0] == "apps" and len(parts) > 2:
        component = "/".join(parts[:3])  # our code: apps/proxy/api.py
    elif parts[0] in ("asyncio", "selectors", "socket", "ssl") or len(parts) == 1:
        component = "stdlib " + parts[0].removesuffix(".py")
    else:
        component = parts[0]
    return f"{name} ({parts[-1]})", component


def print_profile(path: Path, top: int = 15) -> None:
    """py-spy's collapsed stacks: the functions with the most samples of their own, and each
    component's share (a sample counts for every component on its stack, once)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    leaf_component: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1][0]] += n
        leaf_component[frames[-1][1]] += n
        for component in {c for _, c in frames}:
            inclusive[component] += n
    if not samples:
        print("profile: no samples")
        return
    print(f"profile of the web process ({samples} samples, 250/s, Python frames only)")
    print("  functions, own samples:")
    for name, n in own.most_common(top):
        print(f"    {100 * n / samples:5.1f}%  {name}")
    print("  components: own samples | on the stack")
    for component, n in inclusive.most_common(top + 5):
        print(f"    {100 * leaf_component[component] / samples:5.1f}% | {100 * n / samples:5.1f}%"
              f"  {component}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--seconds", type=float, default=5, help="length of each phase's run")
    parser.add_argument("--paced-clients", type=int, default=100)
    parser.add_argument(
        "--paced-share",
        type=float,
        default=0.25,
        help="paced run: this share of the 100-client closed-loop throughput (a rate the web "
        "process sustains with half its CPU taken by others: the machine is shared)",
    )
    parser.add_argument(
        "--paced-rate", type=float, default=0, help="paced run: this many requests/s instead"
    )
    parser.add_argument("--skip-closed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help="sample the web process (py-spy)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a Postgres database, e.g. .../gco_bench_proxy")

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    backend_port, proxy_port = free_port(), free_port()
    backend = start(
        [sys.executable, "-m", "backends", "echo-test", "--port", str(backend_port)], env
    )
    web: subprocess.Popen | None = None
    try:
        wait_http(backend_port, "/health")
        key = setup_deployment(f"http://127.0.0.1:{backend_port}")
        web = start(web_command(args.server, proxy_port), env)
        wait_http(proxy_port, "/healthz")
        print(
            f"server: {args.server}, 1 web process; backend: echo test backend (uvicorn, 1 "
            f"process); client: 1 asyncio process; {os.cpu_count()} CPU cores shared by all; "
            f"load average at start {os.getloadavg()[0]:.2f}"
        )
        asyncio.run(paired(backend_port, proxy_port, key, 10, 1.5, False, 0))  # warm-up

        print("-- 1 client, alternating direct and proxied (added = proxied - direct)")
        for stream in (False, True):
            out = asyncio.run(paired(backend_port, proxy_port, key, 1, args.seconds, stream, 0))
            d, p = out["direct"], out["proxy"]
            added = pct(p, 0.5) - pct(d, 0.5)
            what = "stream, first chunk" if stream else "non-stream, whole  "
            line = (
                f"   {what}: direct p50 {pct(d, 0.5):5.2f} ms, proxied p50 {pct(p, 0.5):5.2f} ms"
                f" -> added p50 {added:5.2f} ms"
            )
            if not stream:
                line += f"   target <= {TARGET_ADDED_P50_MS:g} ms: "
                line += verdict(added <= TARGET_ADDED_P50_MS)
                figure(
                    "added p50, 1 client",
                    added,
                    "ms",
                    f"<= {TARGET_ADDED_P50_MS:g} ms",
                    added <= TARGET_ADDED_P50_MS,
                )
            print(line + f"  ({len(p)} proxied, {len(out['errors'])} errors)")

        print("-- closed loop, proxied only: requests/s of one web process, its CPU per request")
        rps_100 = 0.0
        profile_out = Path(tempfile.mkdtemp()) / "proxy.collapsed"
        for clients in (1, 10, 100):
            spy = None
            if args.profile and clients == 100:
                spy = subprocess.Popen(  # noqa: S603 - py-spy on our own process
                    [
                        shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(web.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "250",
                        "--nonblocking",
                        "--output",
                        str(profile_out),
                        "--duration",
                        str(int(args.seconds)),
                    ],  # fmt: skip
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            cpu_before = cpu_seconds(web.pid)
            done, errors = asyncio.run(closed_loop(proxy_port, key, clients, args.seconds))
            cpu = cpu_seconds(web.pid) - cpu_before
            rps = done / args.seconds
            if clients == 100:
                rps_100 = rps
            cpu_us = cpu / max(done, 1) * 1e6
            per_core = 1e6 / max(cpu_us, 1)
            print(
                f"   {clients:3d} clients: {rps:6.0f} requests/s   target >= {TARGET_RPS:.0f}: "
                f"{verdict(rps >= TARGET_RPS)}   web process CPU {cpu_us:5.0f} µs/request = "
                f"{per_core:5.0f} requests/s per busy core, target >= {TARGET_RPS:.0f}: "
                f"{verdict(per_core >= TARGET_RPS)}  ({errors} errors)"
            )
            figure(
                f"{clients} clients: requests/s",
                rps,
                "/s",
                f">= {TARGET_RPS:.0f}",
                rps >= TARGET_RPS,
            )
            figure(
                f"{clients} clients: per busy core",
                per_core,
                "/s",
                f">= {TARGET_RPS:.0f}",
                per_core >= TARGET_RPS,
            )
            if spy is not None:
                spy.wait(timeout=60)

        rate = args.paced_rate or max(10.0, rps_100 * args.paced_share)
        how = (
            "as asked" if args.paced_rate else f"{args.paced_share:g} of the 100-client throughput"
        )
        print(
            f"-- paced: {args.paced_clients} clients, open loop at {rate:.0f} requests/s in all "
            f"({how}), alternating direct and proxied"
        )
        for stream in (False, True):
            time.sleep(0.5)
            out = asyncio.run(
                paired(
                    backend_port, proxy_port, key, args.paced_clients, args.seconds, stream, rate
                )
            )
            d, p = out["direct"], out["proxy"]
            added99 = pct(p, 0.99) - pct(d, 0.99)
            what = "stream, first chunk" if stream else "non-stream, whole  "
            line = (
                f"   {what}: direct p50 {pct(d, 0.5):5.2f} p99 {pct(d, 0.99):6.2f} ms | proxied"
                f" p50 {pct(p, 0.5):5.2f} p99 {pct(p, 0.99):6.2f} ms -> added p99 {added99:6.2f}"
                " ms"
            )
            if not stream:
                line += f"   target < {TARGET_PACED_ADDED_P99_MS:g} ms: "
                line += verdict(added99 < TARGET_PACED_ADDED_P99_MS)
                figure(
                    f"paced {args.paced_clients} clients: added p99",
                    added99,
                    "ms",
                    f"< {TARGET_PACED_ADDED_P99_MS:g} ms",
                    added99 < TARGET_PACED_ADDED_P99_MS,
                )
            print(line + f"  ({len(p)} proxied, {len(out['errors'])} errors)")
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min)")
        if args.profile and profile_out.exists():
            print_profile(profile_out)
    finally:
        for proc in (web, backend):
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
