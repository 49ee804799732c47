"""The machinery every provider simulator shares: a route table, fault injection and call
statistics behind a control API (`/_sim/...`), and simulated machines that boot over time and
then really run their startup script as a local process (with a fake `nvidia-smi` on PATH that
reports the rented GPUs). The pieces: `wire` (requests, responses, faults), `machines` (the
simulated instances), `serving` (the HTTP server, the control client, RunningSimulator).

No Django here: `python -m apps.sourcing.simulators` runs them standalone for the demo."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from apps.sourcing.simulators.containers import ContainerMachines, ContainerState
from apps.sourcing.simulators.machines import SimInstance, fake_nvidia_smi, group_alive
from apps.sourcing.simulators.wire import Fault, Handler, SimRequest, SimResponse

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
            and (instance.process.poll() is None or group_alive(instance.process.pid)),
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
        if process is None or not group_alive(process.pid):
            return

        def reap() -> None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
            while group_alive(process.pid) and time.monotonic() < deadline:
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
