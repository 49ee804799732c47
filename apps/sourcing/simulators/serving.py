"""A simulator served over real HTTP (a threaded stdlib server), the control client tests use
(`/_sim/...`), and RunningSimulator, which starts and stops one in a test. No Django here."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from apps.sourcing.simulators.base import Simulator
from apps.sourcing.simulators.wire import SimRequest, SimResponse

# --- the HTTP server -------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            method=self.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.simulator.dispatch(request)
        except Exception as exc:  # a simulator bug must show as a 500, not a hang
            response = SimResponse.text(f"simulator error: {exc!r}", 500)
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its timeout)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # bursts of concurrent clients (the stdlib default is 5)

    def __init__(self, simulator: Simulator, port: int = 0, host: str = "127.0.0.1") -> None:
        self.simulator = simulator
        super().__init__((host, port), _Handler)


class SimControl:
    """The control API, over HTTP, as tests and the bench use it."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)

    def fault(self, op: str, kind: str, **kwargs: Any) -> None:
        self.http.post("/_sim/faults", json={"op": op, "kind": kind, **kwargs}).raise_for_status()

    def clear_faults(self) -> None:
        self.http.delete("/_sim/faults").raise_for_status()

    def stats(self) -> dict[str, int]:
        return self.http.get("/_sim/stats").json()["calls"]

    def reset(self, **kwargs: Any) -> None:
        self.http.post("/_sim/reset", json=kwargs).raise_for_status()

    def configure(self, **kwargs: Any) -> None:
        self.http.post("/_sim/config", json=kwargs).raise_for_status()

    def instances(self) -> list[dict[str, Any]]:
        return self.http.get("/_sim/instances").json()["instances"]

    def plant(self, *, gpu_model: str, label: str = "") -> str:
        answer = self.http.post("/_sim/instances", json={"gpu_model": gpu_model, "label": label})
        answer.raise_for_status()
        return str(answer.json()["id"])

    def exhaust(self, gpu_model: str | None = None) -> None:
        self.http.post("/_sim/exhaust", json={"gpu_model": gpu_model}).raise_for_status()

    def preempt(self, instance_id: str, how: str = "outbid") -> None:
        """Spot preemption ("outbid") or host loss ("host_lost"): the container is killed."""
        self.http.post("/_sim/preempt", json={"id": instance_id, "how": how}).raise_for_status()


class RunningSimulator:
    """A simulator serving on 127.0.0.1 in a background thread."""

    def __init__(self, simulator: Simulator, port: int = 0) -> None:
        self.simulator = simulator
        self.server = SimServer(simulator, port=port)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_key = simulator.api_key
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.control = SimControl(self.url)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.simulator.shutdown()
        self.control.http.close()
