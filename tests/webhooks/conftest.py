"""A local HTTP server standing in for a user's webhook receiver, and a real Celery worker
(in a thread, on the test's Redis broker) to deliver to it."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers 500 to the first `fail_first` requests, then 204; records every request."""

    url: str = ""
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, check: Callable[[list[Received]], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if check(list(self.requests)):
                    return
            time.sleep(0.05)
        raise AssertionError(f"receiver got {len(self.requests)} request(s): {self.requests}")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.requests.append(Received(dict(self.headers.items()), body))
                failing = len(receiver.requests) <= receiver.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def webhook_settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_URLS = True
    settings.WEBHOOK_RETRY_BASE_S = 0.2
    settings.WEBHOOK_TIMEOUT_S = 5
    return settings


@pytest.fixture
def celery_worker_thread(webhook_settings) -> Iterator[None]:
    """A real worker consuming the test's broker (Redis), so `deliver.apply_async(countdown=…)`
    waits its backoff as in production. Needs `django_db(transaction=True)`: the worker's
    thread reads what the test committed."""
    from celery.contrib.testing.worker import start_worker
    from django.db import connections

    from config.celery import app

    app.control.purge()
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
    ):
        yield
    app.control.purge()
    connections.close_all()
