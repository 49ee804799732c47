"""What the metrics cost the /v1 hot path, per proxied request: the instrument calls a request
makes (apps/core/metrics.observe_proxy on its usage entry, observe_proxy_overhead) and the
request-id ASGI wrapper (apps/core/observability.RequestContextASGI) around a no-op app.
Measured as CPU time per request (process_time: independent of the machine's load), in
memory (development) and in multi-process mode (PROMETHEUS_MULTIPROC_DIR: values in mmap'd
files), each in a fresh process. Target: a few microseconds, against the proxy's ~1 ms.

    .venv/bin/python bench/metrics_overhead.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(requests: int) -> dict[str, float]:
    import asyncio
    from dataclasses import dataclass

    sys.path.insert(0, str(ROOT))
    from apps.core import metrics
    from apps.core.observability import RequestContextASGI

    @dataclass
    class Entry:  # the fields observe_proxy reads of apps.proxy.routing.UsageEntry
        endpoint: str = "chat/completions"
        status_code: int = 200
        latency_ms: float = 120.0
        first_byte_ms: float | None = 15.0
        prompt_tokens: int = 30
        completion_tokens: int = 90
        streamed: bool = True

    entry = Entry()
    metrics.request_arrived.set(time.perf_counter())
    started = time.process_time()
    for _ in range(requests):
        metrics.observe_proxy_overhead(time.perf_counter())
        metrics.observe_proxy(entry)
    instruments_us = (time.process_time() - started) / requests * 1e6

    async def app(scope, receive, send):  # noqa: ANN001 - a bare ASGI app
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):  # noqa: ANN001
        return None

    wrapped = RequestContextASGI(app)
    scope = {"type": "http", "path": "/v1/chat/completions", "headers": [(b"x-request-id", b"abc")]}

    async def run(target, n: int) -> float:  # noqa: ANN001
        t0 = time.process_time()
        for _ in range(n):
            await target(dict(scope), None, send)
        return time.process_time() - t0

    n = max(1, requests // 4)
    bare = asyncio.run(run(app, n))
    with_id = asyncio.run(run(wrapped, n))
    return {"instruments_us": instruments_us, "asgi_wrapper_us": (with_id - bare) / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.requests)))
        return
    print(
        f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}"
    )
    with tempfile.TemporaryDirectory() as multiproc_dir:
        for mode, extra in (
            ("in memory", {}),
            ("multi-process", {"PROMETHEUS_MULTIPROC_DIR": multiproc_dir}),
        ):
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            env.update(extra, DJANGO_SETTINGS_MODULE="config.settings")
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--requests", str(args.requests)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            print(
                f"{mode:14s} instrument calls per proxied request: "
                f"{figures['instruments_us']:.2f} µs CPU; request-id ASGI wrapper: "
                f"{figures['asgi_wrapper_us']:.2f} µs CPU (target: a few µs of the ~1 ms budget)"
            )


if __name__ == "__main__":
    main()
