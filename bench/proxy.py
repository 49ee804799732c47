"""The /v1 proxy's added latency over calling the backend directly, and its throughput.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_catalog \
    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/proxy.py \
        --server daphne --clients 10 100 500 --seconds 6 --rate 100

One echo test backend (`python -m backends echo-test`, uvicorn, one process) and ONE web
process of ours (`--server daphne`, the Procfile's, or `uvicorn --workers 1`) on 127.0.0.1, a
deployment with one READY replica on that backend. For each concurrency N, N clients (asyncio,
one process, raw HTTP/1.1 keep-alive connections so the client costs little) each alternate a
request straight to the backend and the same request through the proxy, so both see the same
backend under the same load in the same run:

- closed loop: every client sends its next pair as soon as the last one is answered (the
  server saturated: latency is mostly queueing, N / throughput);
- paced: the N clients together send `--rate` pairs per second (below saturation: latency is
  the proxy's own cost).

Reported per mode: non-streaming `POST /v1/chat/completions` p50/p99 of the whole request,
direct vs proxied, and the difference (the added latency); streaming (`stream: true`) p50/p99
of the time to the first chunk. Then `--rps-seconds` of proxied-only closed-loop load at
`--rps-clients` gives the requests/s one web process sustains and its CPU time per request.
Everything shares this machine's cores (load generator, backend, web process, and whatever
else runs): the load average is printed with the figures. Every request goes to 127.0.0.1;
the script stops on its own.
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = "bench-echo"
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "one two three four five six"}]}


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
        self.used = 0.0

    async def request(self, raw: bytes) -> tuple[float, float]:
        """Send `raw`; (seconds to the first body byte, seconds to the end). A kept-alive
        connection the server closed while idle is reopened once, as HTTP clients do."""
        if self.writer is not None and time.monotonic() - self.used > 4.0:
            # Servers close keep-alive connections idle for 5 s (uvicorn, daphne): open a
            # new one first, outside the timing, as a pooling client would.
            self.writer.close()
            self.writer = None
        fresh = self.writer is None
        if fresh:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.used = time.monotonic()
        try:
            return await self._request(raw)
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            partial = getattr(exc, "partial", b"")
            if fresh or partial:
                raise
            self.writer = None
            return await self._request(raw)

    async def _request(self, raw: bytes) -> tuple[float, float]:
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
        return first - started, end - started


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
    backend: int,
    proxy: int,
    key: str,
    clients: int,
    seconds: float,
    stream: bool,
    rate: float | None = None,
) -> dict[str, list[float]]:
    """`clients` clients each alternating direct and proxied requests: back to back (closed
    loop), or paced so that all together send `rate` pairs per second."""
    body = {**BODY, "stream": stream}
    direct_raw = raw_request(backend, body, None)
    proxy_raw = raw_request(proxy, body, key)
    out: dict[str, list[float]] = {"direct": [], "proxy": [], "errors": []}
    stop = time.monotonic() + seconds
    pick = 0 if stream else 1  # time to first chunk, or to the end

    period = clients / rate if rate else 0.0

    async def client(index: int) -> None:
        direct, proxied = Conn(backend), Conn(proxy)
        if period:
            await asyncio.sleep(period * index / clients)  # spread the clients' phases
        while time.monotonic() < stop:
            cycle = time.monotonic()
            for conn, raw, name in ((direct, direct_raw, "direct"), (proxied, proxy_raw, "proxy")):
                try:
                    out[name].append((await conn.request(raw))[pick])
                except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError) as exc:
                    out["errors"].append(0.0)
                    if len(out["errors"]) < 4:
                        print(f"    error ({name}): {exc}")
                    conn.writer = None
            if period:
                await asyncio.sleep(max(0.0, period - (time.monotonic() - cycle)))

    await asyncio.gather(*(client(i) for i in range(clients)))
    return out


async def throughput(proxy: int, key: str, clients: int, seconds: float) -> tuple[int, int]:
    raw = raw_request(proxy, BODY, key)
    done = errors = 0
    stop = time.monotonic() + seconds

    async def client() -> None:
        nonlocal done, errors
        conn = Conn(proxy)
        while time.monotonic() < stop:
            try:
                await conn.request(raw)
                done += 1
            except (OSError, RuntimeError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                conn.writer = None

    await asyncio.gather(*(client() for _ in range(clients)))
    return done, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(clients: int, stream: bool, out: dict[str, list[float]]) -> None:
    d, p = out["direct"], out["proxy"]
    if not d or not p:
        print(f"{clients:4d} clients: no samples ({len(out['errors'])} errors)")
        return
    what = "stream, first chunk" if stream else "non-stream, whole  "
    print(
        f"{clients:4d} clients  {what}  direct p50 {pct(d, 0.5):6.2f} p99 {pct(d, 0.99):7.2f} ms"
        f" | proxied p50 {pct(p, 0.5):6.2f} p99 {pct(p, 0.99):7.2f} ms | added p50 "
        f"{pct(p, 0.5) - pct(d, 0.5):6.2f} p99 {pct(p, 0.99) - pct(d, 0.99):7.2f} ms "
        f"({len(p)} proxied, {len(out['errors'])} errors)"
    )


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(  # noqa: S603 - our own servers
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument(
        "--rate",
        type=float,
        default=100,
        help="paced runs: request pairs per second from all clients together (0: skip)",
    )
    parser.add_argument("--rps-clients", type=int, default=100)
    parser.add_argument("--rps-seconds", type=float, default=10)
    args = parser.parse_args()
    if "gco_bench" not in os.environ.get("DATABASE_URL", ""):
        raise SystemExit("set DATABASE_URL to a gco_bench_* Postgres database")

    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    backend_port, proxy_port = free_port(), free_port()
    backend = start(
        [sys.executable, "-m", "backends", "echo-test", "--port", str(backend_port)], env
    )
    wait_http(backend_port, "/health")
    key = setup_deployment(f"http://127.0.0.1:{backend_port}")
    if args.server == "daphne":
        web_args = ["daphne", "-b", "127.0.0.1", "-p", str(proxy_port), "config.asgi:application"]
        web_args[0] = str(Path(sys.executable).with_name("daphne"))
    else:
        web_args = [
            sys.executable, "-m", "uvicorn", "config.asgi:application", "--port",
            str(proxy_port), "--workers", "1", "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    web = start(web_args, env)
    try:
        wait_http(proxy_port, "/healthz")
        print(
            f"server: {args.server}, 1 web process; backend: echo test backend (uvicorn, 1 "
            f"process); client: 1 asyncio process; {os.cpu_count()} CPU cores shared by all"
        )
        asyncio.run(paired(backend_port, proxy_port, key, 10, 1.5, False))  # warm-up
        runs = [("closed loop", None)] + (
            [(f"paced {args.rate:g}/s", args.rate)] if args.rate else []
        )
        for label, rate in runs:
            print(f"-- {label}: each client alternates direct and proxied requests")
            for clients in args.clients:
                for stream in (False, True):
                    out = asyncio.run(
                        paired(backend_port, proxy_port, key, clients, args.seconds, stream, rate)
                    )
                    report(clients, stream, out)
        cpu_before = cpu_seconds(web.pid)
        done, errors = asyncio.run(throughput(proxy_port, key, args.rps_clients, args.rps_seconds))
        cpu = cpu_seconds(web.pid) - cpu_before
        print(
            f"max throughput through the proxy: {done / args.rps_seconds:.0f} requests/s "
            f"({args.rps_clients} clients, {args.rps_seconds:.0f} s, {errors} errors); the web "
            f"process used {cpu:.1f} CPU-s = {cpu / max(done, 1) * 1e6:.0f} µs CPU per request"
        )
        print(f"load average during the run: {os.getloadavg()[0]:.2f} (1 min)")
    finally:
        for proc in (web, backend):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
