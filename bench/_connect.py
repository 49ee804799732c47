"""Shared set-up for the pod-connect benchmarks (bench/terminal.py, bench/port_proxy.py): a
Postgres database of their own, one web process of ours (daphne, as the Procfile runs it), and
the rows a RUNNING pod needs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "bt_bench-connect"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_bench_database() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres") or "bench" not in url.rsplit("/", 1)[-1]:
        raise SystemExit(
            "set DATABASE_URL to a Postgres database of its own whose name contains 'bench', "
            "e.g. postgres://postgres@127.0.0.1:5432/gco_bench_connect"
        )


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def server_env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        "NODE_BOOTSTRAP_TOKEN": BOOTSTRAP,
        **extra,
    }


def start(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    out: Any = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(  # noqa: S603 - our own processes
        args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
    )


def start_daphne(port: int, env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    daphne = str(Path(sys.executable).with_name("daphne"))
    args = [daphne, "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    return start(args, env, log)


def wait_http(url: str, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"nothing answered at {url}")


def bench_user(email: str) -> Any:
    from apps.accounts.models import User

    user, _ = User.objects.get_or_create(email=email)
    return user


def session_cookie(user: Any) -> str:
    """`Cookie` header value of a signed-in session for `user`."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def finish_old_pods(user: Any) -> None:
    """Earlier runs' pods of the bench user are over (their containers are gone)."""
    from apps.pods.models import Pod

    Pod.objects.filter(owner=user).exclude(status__in=("STOPPED", "FAILED", "TERMINATED")).update(
        status="STOPPED"
    )


def new_pod_row(user: Any, node: Any, **fields: Any) -> Any:
    from apps.pods.models import Pod

    return Pod.objects.create(
        owner=user,
        name=f"bench-{uuid.uuid4().hex[:6]}",
        gpu_model="CPU",
        gpu_count=0,
        node=node,
        price_per_gpu_hour=0,
        **fields,
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} (1 / 5 min) on {os.cpu_count()} cores"
