"""Run the whole benchmark set and end with one summary table (what `make bench` runs).

    .venv/bin/python bench/run_all.py            # everything, ~10 minutes on 2 cores
    .venv/bin/python bench/run_all.py proxy      # only the benches whose name contains "proxy"

Each benchmark is its own process with its own time limit; a bench that fails or times out is
reported in the table and the others still run. Figures come from the `#FIGURE` lines that
`bench/_report.py` prints. Uses `DATABASE_URL` (default: a `gco_bench` database on the local
Postgres, created when missing) and `REDIS_URL` (default: Redis database 10 on 127.0.0.1).
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    timeout_s: int


# Heartbeats are served as the production image serves web traffic (uvicorn workers,
# docker-compose.yml); the proxy bench starts its own uvicorn proxy process (Procfile `proxy`).
HB = "bench/heartbeats.py --interval 10 --duration 30 --servers 2 --server uvicorn"
BENCHES = (
    Bench("heartbeats-10k", tuple(f"{HB} --nodes 10000".split()), 150),
    Bench("heartbeats-1k", tuple(f"{HB} --nodes 1000".split()), 100),
    Bench(
        "scheduler", tuple("bench/scheduler.py --pods 10000 --nodes 2000 --procs 1 4".split()), 180
    ),
    Bench("billing-tick", tuple("bench/billing_tick.py --sizes 10000 50000 100000".split()), 240),
    Bench("proxy", ("bench/proxy.py",), 150),
)


def ensure_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    import psycopg

    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def run(bench: Bench, env: dict[str, str]) -> tuple[str, list[dict], float]:
    started = time.monotonic()
    print(f"\n=== {bench.name}: {' '.join(bench.args)}", flush=True)
    figures: list[dict] = []
    try:
        proc = subprocess.Popen(
            [PYTHON, *bench.args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        deadline = started + bench.timeout_s
        for line in proc.stdout:
            if line.startswith("#FIGURE "):
                figures.append(json.loads(line[len("#FIGURE ") :]))
            else:
                print("   ", line, end="", flush=True)
            if time.monotonic() > deadline:
                break
        try:
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            return "timed out", figures, time.monotonic() - started
        if time.monotonic() > deadline and proc.returncode is None:
            os.killpg(proc.pid, 9)
            return "timed out", figures, time.monotonic() - started
        status = "ok" if code == 0 else f"exit {code}"
    except OSError as exc:
        status = f"failed: {exc}"
    return status, figures, time.monotonic() - started


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gco_bench")
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/10")
    env.setdefault("PYTHONUNBUFFERED", "1")
    ensure_database(env["DATABASE_URL"])
    chosen = [b for b in BENCHES if not argv or any(a in b.name for a in argv)]
    total_started = time.monotonic()
    results = [(bench, *run(bench, env)) for bench in chosen]
    print("\n" + "=" * 100)
    print(f"{'bench':<15} {'figure':<44} {'measured':>14} {'target':<14} {'':<7} load")
    failed = 0
    for bench, status, figures, seconds in results:
        if status != "ok":
            failed += 1
            print(f"{bench.name:<15} {status} after {seconds:.0f} s")
        for f in figures:
            verdict = {True: "met", False: "MISSED", None: ""}[f["ok"]]
            measured = f"{f['value']:,.4g} {f['unit']}"
            print(
                f"{bench.name:<15} {f['name'][:44]:<44} {measured:>14} {f['target']:<14} "
                f"{verdict:<7} {f['load1']}"
            )
    print(f"total {time.monotonic() - total_started:.0f} s on {os.cpu_count()} CPUs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
