"""The machinery every provider simulator shares: a real threaded HTTP server, a route table,
fault injection and call statistics behind a control API (`/_sim/...`), and simulated
machines that boot over time and then really run their startup script as a local process
(with a fake `nvidia-smi` on PATH that reports the rented GPUs).

No Django here: `python -m apps.sourcing.simulators` runs them standalone for the demo."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from apps.sourcing.adapters.gpu_names import BY_CANONICAL
from apps.sourcing.simulators.containers import ContainerMachines, ContainerState, SimWorkload

# --- requests and responses ------------------------------------------------------------------


@dataclass
class SimRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class SimResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (a lost answer)

    @classmethod
    def json(cls, payload: Any, status: int = 200, **headers: str) -> SimResponse:
        return cls(
            status=status,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json", **headers},
        )

    @classmethod
    def text(cls, text: str, status: int, **headers: str) -> SimResponse:
        return cls(
            status=status, body=text.encode(), headers={"Content-Type": "text/plain", **headers}
        )


@dataclass
class Fault:
    """`kind`: status (answer `status`), rate_limit, timeout (sleep `seconds`, then answer),
    capacity, auth, account, invalid, malformed, lost_answer (act, then drop the connection),
    stale_offer (searches list an offer that is already gone), graphql_error (RunPod: 200 with
    errors).
    `op`: offers, create, get, list, terminate, or * for any. `count` < 0: until cleared."""

    op: str
    kind: str
    count: int = 1
    status: int = 503
    seconds: float = 30.0


Handler = Callable[[SimRequest, re.Match[str]], SimResponse]


# --- simulated machines ----------------------------------------------------------------------


@dataclass
class SimInstance:
    id: str
    label: str
    gpu_model: str
    gpu_count: int
    price_per_hour: float  # dollars, whole instance, as the wire carries it
    created_at: float
    boot_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    startup_script: str = ""
    region: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    terminated_at: float | None = None
    running_since: float | None = None
    process: subprocess.Popen[bytes] | None = None
    sandbox: str = ""
    workload: SimWorkload | None = None  # container clouds: what the container runs
    preempted: str = ""  # "outbid" or "host_lost": the cloud took it back

    def phase(self, now: float) -> str:
        """creating → booting → running (→ terminated)."""
        if self.terminated:
            return "terminated"
        age = now - self.created_at
        if self.running_since is not None or age >= self.boot_seconds:
            return "running"
        return "creating" if age < self.boot_seconds / 2 else "booting"


def fake_nvidia_smi(bin_dir: Path, gpu_model: str, gpu_count: int) -> None:
    """An `nvidia-smi` that answers the agent's CSV query with `gpu_count` GPUs of
    `gpu_model`, in the format of the real captures (shared/fixtures/gpu)."""
    row = BY_CANONICAL.get(gpu_model)
    name = row.driver if row and row.driver else f"NVIDIA {gpu_model}"
    memory = (row.vram_gb if row else 24) * 1024 - 400
    lines = [
        f"{i}, GPU-{uuid.uuid4()}, {name}, 00000000:{i + 6:02X}:00.0, 580.159.04, {memory}, 0, "
        f"{memory}, 0, 0, 35, 60.00, 700.00, 405, 1980, 9.0, Enabled, Disabled"
        for i in range(gpu_count)
    ]
    (bin_dir / "gpus.csv").write_text("\n".join(lines) + "\n")
    (bin_dir / "banner.txt").write_text(
        "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0 |\n"
    )
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n  --query-gpu=*) cat "{bin_dir}/gpus.csv" ;;\n'
        f'  -q) exit 9 ;;\n  *) cat "{bin_dir}/banner.txt" ;;\nesac\n'
    )
    script.chmod(0o755)


# --- the simulator base ----------------------------------------------------------------------


class Simulator:
    """One provider's API over a stateful market. Subclasses register routes and implement the
    provider's error bodies; everything runs under one lock (the market is small and calls
    are short; a `timeout` fault sleeps outside it)."""

    name = "simulator"
    api_key = "sim-key"
    # Container clouds run each instance as a container of the requested image (containers.py);
    # VM clouds run its startup script as a local process standing in for the machine.
    container_cloud = False

    def __init__(
        self,
        *,
        offers: int = 60,
        seed: int = 7,
        boot_seconds: float = 1.0,
        drift_seconds: float = 10.0,
        run_startup_scripts: bool = True,
        api_key: str | None = None,
        container_run_id: str | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.containers = ContainerMachines(self.name, container_run_id)
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = []
        self.faults: list[Fault] = []
        self.stats: Counter[str] = Counter()
        self.instances: dict[str, SimInstance] = {}
        self.boot_seconds = boot_seconds
        self.drift_seconds = drift_seconds
        self.run_startup_scripts = run_startup_scripts
        self.extra_env: dict[str, str] = {}
        self.stale_offers = 0
        self.log_files: dict[str, str] = {}  # published log uploads (Vast's result_url)
        if api_key is not None:
            self.api_key = api_key
        self.seed = seed
        self.offer_target = offers
        self._last_drift = time.monotonic()
        self._stop = threading.Event()
        self._clock = threading.Thread(
            target=self._clock_loop, name=f"{self.name}-clock", daemon=True
        )
        self.register_routes()
        self.build_market(offers=offers, seed=seed)
        self._clock.start()

    # --- to implement ---

    def register_routes(self) -> None:
        raise NotImplementedError

    def build_market(self, *, offers: int, seed: int) -> None:
        raise NotImplementedError

    def drift(self) -> None:
        """Move prices a little (called every `drift_seconds`)."""

    def authorized(self, request: SimRequest) -> bool:
        auth = request.headers.get("authorization", "")
        return auth == f"Bearer {self.api_key}" or request.query.get("api_key") == self.api_key

    def auth_error(self) -> SimResponse:
        return SimResponse.json({"error": "unauthorized"}, 401)

    def error_status(self, status: int) -> SimResponse:
        return SimResponse.text(f"{status} upstream error", status)

    def rate_limited(self) -> SimResponse:
        return SimResponse.text("rate limited", 429)

    def capacity_error(self, op: str) -> SimResponse:
        return SimResponse.json({"error": "capacity"}, 400)

    def not_found(self) -> SimResponse:
        return SimResponse.json({"error": "not found"}, 404)

    def account_error(self) -> SimResponse:
        """Our account cannot use the provider now (credit, quota, suspended)."""
        return SimResponse.json({"error": "account"}, 403)

    def invalid_request(self) -> SimResponse:
        """The provider's answer to a malformed request of ours."""
        return SimResponse.json({"error": "invalid"}, 400)

    def startup_env(self, instance: SimInstance) -> dict[str, str]:
        return dict(instance.env)

    def plant(self, *, label: str, gpu_model: str) -> SimInstance:
        """An instance that exists upstream but that nobody asked us for (an orphan)."""
        raise NotImplementedError

    def instance_view(self, instance: SimInstance) -> dict[str, Any]:
        return {
            "id": instance.id,
            "label": instance.label,
            "gpu_model": instance.gpu_model,
            "gpu_count": instance.gpu_count,
            "phase": instance.phase(time.monotonic()),
            "terminated": instance.terminated,
            "process_alive": instance.process is not None
            and (instance.process.poll() is None or _group_alive(instance.process.pid)),
            "startup_script": instance.startup_script,
            "env": instance.env,
            "image": instance.workload.image if instance.workload else None,
            "command": instance.workload.command if instance.workload else None,
            "container": self.container_state(instance).status if instance.workload else None,
            "preempted": instance.preempted,
        }

    def container_state(self, instance: SimInstance) -> ContainerState:
        if instance.preempted:
            return ContainerState("exited", exit_code=137, message=instance.preempted)
        return self.containers.state(instance.id)

    def preempt(self, instance: SimInstance, how: str) -> None:
        """The cloud takes a running instance back: its container is killed."""
        instance.preempted = how
        self.containers.kill(instance.id)

    # --- plumbing ---

    def route(self, method: str, pattern: str, op: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), op, handler))

    def new_instance(self, **kwargs: Any) -> SimInstance:
        instance = SimInstance(
            created_at=time.monotonic(), boot_seconds=self.boot_seconds, **kwargs
        )
        self.instances[instance.id] = instance
        return instance

    def terminate(self, instance: SimInstance) -> None:
        instance.terminated = True
        instance.terminated_at = time.monotonic()
        self._kill(instance)
        if instance.workload is not None:
            threading.Thread(
                target=self.containers.remove, args=(instance.id,), daemon=True
            ).start()

    def dispatch(self, request: SimRequest) -> SimResponse:
        if request.path.startswith("/_sim/"):
            return self._control(request)
        routed = next(
            (
                (op, handler, match)
                for method, pattern, op, handler in self.routes
                if method == request.method and (match := pattern.match(request.path))
            ),
            None,
        )
        if routed is None:
            return self.not_found()
        op, handler, match = routed
        op = self.op_name(op, request)
        with self.lock:
            self.stats[op] += 1
            self.stats["total"] += 1
            fault = self._take_fault(op)
        if not self.authorized(request):
            return self.auth_error()
        if fault is not None:
            if fault.kind in ("timeout", "slow"):
                time.sleep(fault.seconds)
            elif fault.kind == "status":
                return self.error_status(fault.status)
            elif fault.kind == "rate_limit":
                return self.rate_limited()
            elif fault.kind == "capacity":
                return self.capacity_error(op)
            elif fault.kind == "auth":
                return self.auth_error()
            elif fault.kind == "account":
                return self.account_error()
            elif fault.kind == "invalid":
                return self.invalid_request()
            elif fault.kind == "malformed":
                return SimResponse(
                    200, b'{"offers": [{"id": "x", ', {"Content-Type": "application/json"}
                )
            elif fault.kind == "stale_offer":
                with self.lock:
                    self.stale_offers += 1
            elif fault.kind == "lost_answer":
                with self.lock:
                    response = handler(request, match)
                response.drop = True
                return response
            elif fault.kind == "graphql_error":
                return self.graphql_error()
        with self.lock:
            return handler(request, match)

    def graphql_error(self) -> SimResponse:
        return self.error_status(500)

    def op_name(self, op: str, request: SimRequest) -> str:
        """The operation a request is (for statistics and faults)."""
        return op

    def _take_fault(self, op: str) -> Fault | None:
        for fault in self.faults:
            if fault.op in (op, "*") and fault.count != 0:
                if fault.count > 0:
                    fault.count -= 1
                return fault
        return None

    def _control(self, request: SimRequest) -> SimResponse:
        path, method = request.path, request.method
        body = request.json() or {}
        with self.lock:
            if path == "/_sim/stats" and method == "GET":
                return SimResponse.json({"calls": dict(self.stats), "total": self.stats["total"]})
            if path == "/_sim/faults" and method == "POST":
                items = body if isinstance(body, list) else [body]
                self.faults += [Fault(**item) for item in items]
                return SimResponse.json({"faults": len(self.faults)})
            if path == "/_sim/faults" and method == "DELETE":
                self.faults.clear()
                self.stale_offers = 0
                return SimResponse.json({"faults": 0})
            if path == "/_sim/config" and method == "POST":
                for key in ("boot_seconds", "drift_seconds", "run_startup_scripts"):
                    if key in body:
                        setattr(self, key, body[key])
                self.extra_env.update(body.get("extra_env") or {})
                self.configure(body)
                return SimResponse.json({"ok": True})
            if path == "/_sim/reset" and method == "POST":
                for instance in self.instances.values():
                    self._kill(instance)
                self.containers.remove_all()
                self.instances.clear()
                self.log_files.clear()
                self.faults.clear()
                self.stats.clear()
                self.stale_offers = 0
                self.build_market(
                    offers=int(body.get("offers", self.offer_target)),
                    seed=int(body.get("seed", self.seed)),
                )
                return SimResponse.json({"ok": True})
            if path == "/_sim/instances" and method == "GET":
                return SimResponse.json(
                    {"instances": [self.instance_view(i) for i in self.instances.values()]}
                )
            if path == "/_sim/instances" and method == "POST":
                planted = self.plant(label=body.get("label", ""), gpu_model=body["gpu_model"])
                return SimResponse.json({"id": planted.id})
            if path == "/_sim/preempt" and method == "POST":
                target = self.instances.get(str(body.get("id")))
                if target is None or target.terminated:
                    return SimResponse.json({"error": "no such instance"}, 404)
                self.preempt(target, str(body.get("how") or "outbid"))
                return SimResponse.json({"ok": True})
            if path.startswith("/_sim/logs/") and method == "GET":
                text = self.log_files.get(path.rsplit("/", 1)[-1])
                if text is None:
                    return SimResponse.text("NoSuchKey", 404)
                return SimResponse.text(text, 200)
            if path == "/_sim/exhaust" and method == "POST":
                self.exhaust(body.get("gpu_model"))
                return SimResponse.json({"ok": True})
        return SimResponse.json({"error": "unknown control path"}, 404)

    def configure(self, body: dict[str, Any]) -> None:
        """Provider-specific settings of the control API."""

    def exhaust(self, gpu_model: str | None) -> None:
        """Capacity runs out: no machine of `gpu_model` (None: of any model) is left."""
        raise NotImplementedError

    # --- the clock: boots machines, runs startup scripts, moves prices ---

    def _clock_loop(self) -> None:
        while not self._stop.wait(0.05):
            now = time.monotonic()
            to_start: list[SimInstance] = []
            with self.lock:
                for instance in list(self.instances.values()):
                    if (
                        not instance.terminated
                        and instance.running_since is None
                        and now - instance.created_at >= instance.boot_seconds
                    ):
                        instance.running_since = now
                        if instance.workload is not None:
                            to_start.append(instance)
                        elif self.run_startup_scripts and instance.startup_script:
                            self._start_script(instance)
                if self.drift_seconds and now - self._last_drift >= self.drift_seconds:
                    self._last_drift = now
                    self.drift()
            for instance in to_start:  # Docker is slow: never under the market's lock
                assert instance.workload is not None  # noqa: S101 - selected above
                self.containers.start(instance.id, instance.workload)
                with self.lock:
                    if instance.terminated:  # terminated while its container was starting
                        self.containers.remove(instance.id)

    def _start_script(self, instance: SimInstance) -> None:
        sandbox = Path(tempfile.mkdtemp(prefix=f"sim-{self.name}-{instance.id}-"))
        bin_dir = sandbox / "bin"
        bin_dir.mkdir()
        fake_nvidia_smi(bin_dir, instance.gpu_model, instance.gpu_count)
        instance.sandbox = str(sandbox)
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(sandbox),
            "LANG": "C.UTF-8",
            **{k: os.environ[k] for k in ("DOCKER_HOST",) if k in os.environ},
            **self.extra_env,
            **self.startup_env(instance),
        }
        log = (sandbox / "startup.log").open("ab")
        instance.process = subprocess.Popen(  # noqa: S603 - the machine's own startup script
            ["/bin/bash", "-c", self.startup_command(instance)],  # noqa: S607
            cwd=sandbox,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def startup_command(self, instance: SimInstance) -> str:
        return instance.startup_script

    def _kill(self, instance: SimInstance) -> None:
        """The machine is gone: every process it started goes with it, including ones its
        startup script left running in the background after it exited (the agent)."""
        process = instance.process
        if process is None or not _group_alive(process.pid):
            return

        def reap() -> None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while _group_alive(process.pid) and time.monotonic() < deadline:
                if process.poll() is None:
                    try:
                        process.wait(timeout=0.1)
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    time.sleep(0.1)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=5)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass

        threading.Thread(target=reap, daemon=True).start()

    def shutdown(self) -> None:
        self._stop.set()
        with self.lock:
            for instance in self.instances.values():
                self._kill(instance)
                if instance.sandbox:
                    shutil.rmtree(instance.sandbox, ignore_errors=True)
        self.containers.remove_all()


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group: an orphaned zombie whose
    new parent never reaps it still answers `killpg(pgid, 0)`."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


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
