"""Container-cloud machines for the simulators: a rented Vast.ai or RunPod instance *is* a
container of the image named in the create call, so the simulator starts that image on the
local Docker engine with the requested command, env and ports, and reports the container's
real state, exit code and logs.

There is no bridge network on these machines: containers run with `network_mode="host"`, so
a container port P answers on 127.0.0.1:P and the simulator's port table reports it as the
host port. Every container carries `gco.sim.run=<run id>` (one id per simulator object), so a
test or the simulator's shutdown removes only its own."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

LABEL_RUN = "gco.sim.run"
LABEL_PROVIDER = "gco.sim.provider"
LABEL_INSTANCE = "gco.sim.instance"


@dataclass(frozen=True)
class SimPort:
    container_port: int
    protocol: str = "tcp"


@dataclass
class SimWorkload:
    """What the create call asked the container to be."""

    image: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: list[SimPort] = field(default_factory=list)


@dataclass(frozen=True)
class ContainerState:
    """`status`: pending (not started yet), running, exited, failed (could not be created:
    `message` says why), gone (removed behind our back)."""

    status: str
    exit_code: int | None = None
    message: str = ""


class ContainerMachines:
    """The simulator's Docker side. Thread-safe; Docker calls run outside the simulator's
    lock where they may be slow (pulling is impossible here, creating takes ~0.3 s)."""

    def __init__(self, provider: str, run_id: str | None = None) -> None:
        self.provider = provider
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self._client: Any = None
        self._lock = threading.Lock()
        self._containers: dict[str, str] = {}  # instance id → container id
        self._failures: dict[str, str] = {}  # instance id → why it could not start

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import docker  # the simulator's only Docker use; optional for API-only tests

                self._client = docker.from_env(timeout=30)
            return self._client

    def start(self, instance_id: str, workload: SimWorkload) -> None:
        from docker.errors import DockerException, ImageNotFound

        try:
            client = self.client()
            container = client.containers.run(
                workload.image,
                command=workload.command,
                environment=workload.env,
                network_mode="host",
                labels={
                    LABEL_RUN: self.run_id,
                    LABEL_PROVIDER: self.provider,
                    LABEL_INSTANCE: instance_id,
                },
                detach=True,
            )
        except ImageNotFound as exc:
            self._failures[instance_id] = (
                f"OCI runtime create failed: pull access denied for {workload.image}: {exc}"
            )
            return
        except DockerException as exc:
            self._failures[instance_id] = f"OCI runtime create failed: {exc}"
            return
        self._containers[instance_id] = container.id

    def started(self, instance_id: str) -> bool:
        return instance_id in self._containers or instance_id in self._failures

    def state(self, instance_id: str) -> ContainerState:
        from docker.errors import DockerException, NotFound

        if instance_id in self._failures:
            return ContainerState("failed", message=self._failures[instance_id])
        container_id = self._containers.get(instance_id)
        if container_id is None:
            return ContainerState("pending")
        try:
            attrs = self.client().api.inspect_container(container_id)
        except NotFound:
            return ContainerState("gone")
        except DockerException as exc:
            return ContainerState("pending", message=str(exc))
        state = attrs.get("State") or {}
        if state.get("Running"):
            return ContainerState("running")
        if state.get("Status") == "created":
            return ContainerState("pending")
        return ContainerState("exited", exit_code=state.get("ExitCode"))

    def logs(self, instance_id: str, tail: int) -> str:
        from docker.errors import DockerException

        container_id = self._containers.get(instance_id)
        if container_id is None:
            return self._failures.get(instance_id, "")
        try:
            raw = self.client().api.logs(container_id, tail=tail, stdout=True, stderr=True)
        except DockerException as exc:
            return f"(no logs: {exc})"
        return raw.decode(errors="replace")

    def kill(self, instance_id: str) -> None:
        """The host took the container away (spot preemption, host loss)."""
        from docker.errors import DockerException

        container_id = self._containers.get(instance_id)
        if container_id is None:
            return
        try:
            self.client().api.kill(container_id)
        except DockerException:
            pass  # already stopped

    def remove(self, instance_id: str) -> None:
        from docker.errors import DockerException

        self._failures.pop(instance_id, None)
        container_id = self._containers.pop(instance_id, None)
        if container_id is None:
            return
        try:
            self.client().api.remove_container(container_id, force=True)
        except DockerException:
            pass  # already gone

    def remove_all(self) -> None:
        """Every container of this simulator object, whether we still track it or not."""
        from docker.errors import DockerException

        self._containers.clear()
        self._failures.clear()
        if self._client is None:
            return
        try:
            for container in self._client.containers.list(
                all=True, filters={"label": f"{LABEL_RUN}={self.run_id}"}
            ):
                container.remove(force=True)
        except DockerException:
            pass
