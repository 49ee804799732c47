"""Process and network helpers shared by the test suite: free ports, polling with a deadline,
our servers (uvicorn in a thread, daphne and the test backends as processes), reading the JSON
log lines and every stored byte of the database back. Nothing here builds data: builders live
in tests/factories.py."""

import asyncio
import inspect
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.db import connection
from pythonjsonlogger.json import JsonFormatter

from apps.core import request_context

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll `check` until it returns something truthy (and return that), or fail after
    `timeout` seconds saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def wait_for_async(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """`wait_for` inside an event loop: `check` (a function or a coroutine function) is polled
    with `asyncio.sleep` between tries, so the tasks it waits for keep running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Backend:
    name: str
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


def start_backend(kind: str, *, name: str, python: str = sys.executable, **flags: Any) -> Backend:
    port = free_port()
    args = [python, "-m", "backends", kind, "--port", str(port), "--name", name]
    for flag, value in flags.items():
        args += [f"--{flag.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(  # noqa: S603 - our own module
        args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    backend = Backend(name=name, port=port, proc=proc)
    health = "/v1/models" if kind == "chat" else "/health"
    try:
        wait_for(
            lambda: proc.poll() is not None or answers(backend.url + health),
            f"{kind} backend on {port}",
            timeout=120,
        )
    except AssertionError:
        backend.kill()
        raise
    if proc.poll() is not None:
        raise AssertionError(f"{kind} backend exited with {proc.returncode}")
    return backend


class AsgiServer:
    """config.asgi.application (or `app`, e.g. it wrapped) under uvicorn in a background thread."""

    def __init__(self, app: Any = None) -> None:
        import uvicorn

        from config.asgi import application

        application = app or application

        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                application,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                access_log=False,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AsgiServer":
        self.thread.start()
        wait_for(lambda: self.server.started, "the ASGI server")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_daphne(**env: str) -> tuple[subprocess.Popen, str]:
    """daphne (the Procfile's web server) on the test database, in its own process; skips on
    SQLite (a second process cannot see the test's in-memory database)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("daphne runs in its own process: it needs the test database on Postgres")
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        + ["config.asgi:application"],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/healthz"), "daphne")
    except AssertionError:
        proc.kill()
        raise
    return proc, url


def all_database_text() -> str:
    """Every column of every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(f"SELECT * FROM {table}")  # noqa: S608 - table names from the ORM
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


class JsonLines:
    """What the root logger writes, through the json formatter of settings.LOGGING."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        options = {
            k: v for k, v in django_settings.LOGGING["formatters"]["json"].items() if k != "()"
        }
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter(**options))
        self.handler.addFilter(request_context.RequestIdFilter())

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]


@contextmanager
def capturing() -> Iterator[JsonLines]:
    lines = JsonLines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(lines.handler)
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(lines.handler)
        root.setLevel(level)


def stop_processes(procs: list[subprocess.Popen], timeout: float = 30) -> None:
    """Stop the agent (or other) processes a fixture started: SIGTERM, then kill after
    `timeout` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
