"""The pod port proxy's added latency and throughput against calling the pod's app directly.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/gco_bench_connect \
    REDIS_URL=redis://127.0.0.1:6379/9 .venv/bin/python bench/port_proxy.py \
        --clients 1 10 --seconds 8 --download-mb 100 --downloads 3

The app is tests/e2e/port_app.py (uvicorn, one process) on 127.0.0.1:PORT, as a pod with host
networking serves it (started here as a plain process: the network path, loopback to the
port, is the same as from a container with host networking). One web process of ours (daphne,
the Procfile's) proxies `/pods/{id}/ports/PORT/…` to it for a RUNNING pod row whose endpoint
is that port, authorised by a pod access token (`X-Pod-Token`).

- Small requests: each of N clients (httpx, keep-alive) alternates `GET /hello` straight to
  the app and the same request through the proxy, so both see the same app under the same
  load; p50/p99 of each, and the difference (the proxy's added latency).
- Download: `GET /bytes?n=…` of `--download-mb` MB, direct and proxied alternately,
  `--downloads` times each; MB/s of each and the proxied/direct ratio (median runs).

Everything shares this machine's cores with whatever else runs (the load average is
printed). Every request goes to 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._connect import (  # noqa: E402
    ROOT,
    bench_user,
    django_setup,
    finish_old_pods,
    free_port,
    load_average,
    new_pod_row,
    pct,
    require_bench_database,
    server_env,
    start,
    start_daphne,
    wait_http,
)


def setup_pod(app_port: int) -> tuple[str, str]:
    """A RUNNING pod row whose endpoint is the app's port, and a raw access token for it."""
    from apps.nodes import services as node_services
    from apps.nodes.registration import RegistrationGrant
    from apps.podconnect import services

    user = bench_user("bench-port-proxy@example.com")
    finish_old_pods(user)
    node = node_services.node_register(
        grant=RegistrationGrant(provider_id=None),
        data={"hostname": "bench-port-proxy", "gpus": []},
    ).node
    pod = new_pod_row(
        user,
        node,
        image="local/port-app",
        status="RUNNING",
        ports=[{"container_port": app_port, "protocol": "tcp"}],
        endpoints={f"{app_port}/tcp": f"127.0.0.1:{app_port}"},
    )
    issued = services.pod_token_create(user=user, pod_id=pod.pk, name="bench")
    return str(pod.pk), issued.raw


async def paired(direct: str, proxied: str, token: str, clients: int, seconds: float) -> dict:
    out: dict[str, list[float]] = {"direct": [], "proxied": []}
    errors = 0

    async def client() -> None:
        nonlocal errors
        async with (
            httpx.AsyncClient(base_url=direct) as to_app,
            httpx.AsyncClient(base_url=proxied, headers={"X-Pod-Token": token}) as to_proxy,
        ):
            await to_app.get("/hello")
            await to_proxy.get("/hello")
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                for name, http in (("direct", to_app), ("proxied", to_proxy)):
                    started = time.perf_counter()
                    response = await http.get("/hello")
                    elapsed = (time.perf_counter() - started) * 1000
                    if response.status_code != 200:
                        errors += 1
                    else:
                        out[name].append(elapsed)

    await asyncio.gather(*(client() for _ in range(clients)))
    return {**out, "errors": errors}


async def download(url: str, headers: dict[str, str], size: int) -> float:
    """Seconds to read `size` bytes from `url` (checked)."""
    received = 0
    async with httpx.AsyncClient(timeout=300) as http:
        started = time.perf_counter()
        async with http.stream("GET", url, headers=headers) as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw(1 << 20):
                received += len(chunk)
        elapsed = time.perf_counter() - started
    if received != size:
        raise SystemExit(f"{url}: read {received} bytes of {size}")
    return elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--download-mb", type=int, default=100)
    parser.add_argument("--downloads", type=int, default=3)
    parser.add_argument("--server", choices=("daphne", "uvicorn"), default="daphne")
    args = parser.parse_args()
    require_bench_database()
    django_setup()

    env = server_env()
    app_port, web_port = free_port(), free_port()
    app = start([sys.executable, str(ROOT / "tests/e2e/port_app.py"), "--port", str(app_port)], env)
    if args.server == "daphne":
        web = start_daphne(web_port, env)
    else:
        web = start(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port",
             str(web_port), "--no-access-log", "--log-level", "warning"],
            env,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{app_port}/up")
        wait_http(f"http://127.0.0.1:{web_port}/healthz")
        pod_id, token = setup_pod(app_port)
        direct = f"http://127.0.0.1:{app_port}"
        proxied = f"http://127.0.0.1:{web_port}/pods/{pod_id}/ports/{app_port}"
        print(
            "app: tests/e2e/port_app.py (uvicorn, 1 process); "
            f"server: {args.server}, 1 web process; "
            f"client: 1 asyncio process (httpx); {load_average()}"
        )
        asyncio.run(paired(direct, proxied, token, 2, 1.0))  # warm-up
        for clients in args.clients:
            out = asyncio.run(paired(direct, proxied, token, clients, args.seconds))
            d, p = out["direct"], out["proxied"]
            print(
                f"small GET, {clients:3d} client(s): direct p50 {pct(d, 0.5):6.2f} p99 "
                f"{pct(d, 0.99):6.2f} ms | proxied p50 {pct(p, 0.5):6.2f} p99 "
                f"{pct(p, 0.99):6.2f} ms | added p50 {pct(p, 0.5) - pct(d, 0.5):5.2f} p99 "
                f"{pct(p, 0.99) - pct(d, 0.99):6.2f} ms ({len(p)} pairs, {out['errors']} errors)"
            )
        size = args.download_mb * 1024 * 1024
        times: dict[str, list[float]] = {"direct": [], "proxied": []}
        web_cpu = 0.0
        for _ in range(args.downloads):
            times["direct"].append(asyncio.run(download(f"{direct}/bytes?n={size}", {}, size)))
            before = cpu_seconds(web.pid)
            times["proxied"].append(
                asyncio.run(download(f"{proxied}/bytes?n={size}", {"X-Pod-Token": token}, size))
            )
            web_cpu += cpu_seconds(web.pid) - before
        rate = {k: args.download_mb / statistics.median(v) for k, v in times.items()}
        print(
            f"download {args.download_mb} MB x{args.downloads}: direct {rate['direct']:7.1f} MB/s"
            f" | proxied {rate['proxied']:7.1f} MB/s | proxied/direct "
            f"{rate['proxied'] / rate['direct']:.0%} (medians); {load_average()}"
        )
        megabytes = args.download_mb * args.downloads
        print(f"web process CPU while proxying downloads: {web_cpu / megabytes * 1000:.2f} ms/MB")
    finally:
        for proc in (web, app):
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
