"""Pod containers on the local Docker engine, through the Docker SDK.

Every container the agent manages carries the labels ``gco.managed=true``, ``gco.pod_id``,
``gco.node_id`` and ``gco.command_id`` and is named ``gco-pod-<pod_id>``, so a restarted agent
rebuilds its whole view from the engine. Every operation is idempotent: starting a pod that
already has a container answers with that container, stopping a pod that has none succeeds.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import docker  # type: ignore[import-untyped, unused-ignore]
from docker.errors import (  # type: ignore[import-untyped, unused-ignore]
    APIError,
    DockerException,
    ImageNotFound,
    NotFound,
)

from agent.log import log

logger = logging.getLogger("agent.runtime")

LABEL_MANAGED = "gco.managed"
LABEL_POD = "gco.pod_id"
LABEL_NODE = "gco.node_id"
LABEL_COMMAND = "gco.command_id"
LABEL_PORTS = "gco.ports"  # the asked ports of a host-network container, for the start result
LABEL_VOLUME = "gco.volume_id"
NAME_PREFIX = "gco-pod-"
VOLUME_PREFIX = "gco-vol-"
API_TIMEOUT_S = 60
# The ack carrying logs must stay under the server's request-body cap (1 MiB by default),
# counted as JSON, where escaping can make text longer.
MAX_LOG_JSON_BYTES = 512 * 1024
MAX_STATE_ERROR_CHARS = 2000
REPORTED_STATES = frozenset({"created", "running", "restarting", "paused", "exited", "dead"})
RESTART_POLICIES = ("no", "on-failure", "unless-stopped")
NO_PORT_NETWORKS = ("host", "none")
_ZERO_TIME = "0001-01-01T00:00:00Z"
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


class ContainerRuntimeError(Exception):
    """A container operation failed; the message is fit for a failed command ack."""


class RuntimeUnavailableError(ContainerRuntimeError):
    """The container engine does not answer."""


class ImageUnavailableError(ContainerRuntimeError):
    """The image is not on this host and could not be pulled."""


class ContainerMissingError(ContainerRuntimeError):
    """No managed container exists for the pod."""


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    protocol: str = "tcp"
    host_port: int | None = None

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class VolumeMount:
    name: str  # the Docker volume, gco-vol-<id>
    mount_path: str
    size_gb: int


@dataclass(frozen=True)
class PodSpec:
    """What ``start_pod`` asks for, already validated (see ``agent.commands``)."""

    pod_id: str
    image: str
    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    ports: list[PortSpec] = field(default_factory=list)
    gpu_indices: list[int] = field(default_factory=list)
    cpu_limit: float | None = None
    memory_limit_mb: int | None = None
    shm_size_mb: int | None = None
    # The writable layer's quota; measured (overlay2 on ext4 cannot enforce it) and reported.
    disk_limit_gb: int | None = None
    gpu_uuids: list[str] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    authorized_keys: list[str] = field(default_factory=list)
    restart_policy: str = "no"
    network_mode: str | None = None
    node_id: str = ""
    command_id: str = ""


def container_name(pod_id: str) -> str:
    return f"{NAME_PREFIX}{pod_id}"


def docker_time(value: object) -> str | None:
    """Docker's ``2026-11-26T10:00:00.123456789Z`` → ``2026-11-26T10:00:00.123456Z``.

    The zero time Docker uses for "never" is ``None``.
    """
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    match = _DOCKER_TIME.match(value)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    parsed = datetime.fromisoformat(f"{base}.{micros}{'+00:00' if zone in (None, 'Z') else zone}")
    text = parsed.astimezone(UTC).isoformat(timespec="microseconds" if int(micros) else "seconds")
    return text.replace("+00:00", "Z")


def container_state(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A heartbeat ``containers[]`` item from ``docker inspect`` output."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    state = attrs.get("State") or {}
    status = str(state.get("Status") or "dead")
    if status == "removing":
        status = "exited"  # not in the protocol; it is on its way out
    elif status not in REPORTED_STATES:
        status = "dead"
    error = str(state.get("Error") or "")
    if not error and state.get("OOMKilled"):
        error = "OOMKilled"
    exit_code = state.get("ExitCode")
    return {
        "pod_id": labels.get(LABEL_POD, ""),
        "container_id": attrs.get("Id", ""),
        "state": status,
        "exit_code": exit_code if status in ("exited", "dead") else None,
        "started_at": docker_time(state.get("StartedAt")),
        "finished_at": docker_time(state.get("FinishedAt"))
        if status in ("exited", "dead")
        else None,
        "error": error[:MAX_STATE_ERROR_CHARS],
    }


def gpu_device_request(spec: PodSpec) -> Any:
    """The NVIDIA device request for the pod's GPUs: by UUID when the server sent them (an index
    can name another device after a driver reload or with MIG), else by index."""
    ids = list(spec.gpu_uuids) if spec.gpu_uuids else [str(i) for i in spec.gpu_indices]
    return docker.types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])


def authorized_keys_tar(keys: Iterable[str]) -> bytes:
    """A tar of /root/.ssh/authorized_keys (0600, in a 0700 folder) holding ``keys``."""
    body = ("\n".join(k.strip() for k in keys) + "\n").encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder, mode in (("root", 0o700), ("root/.ssh", 0o700)):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)
        info = tarfile.TarInfo("root/.ssh/authorized_keys")
        info.size = len(body)
        info.mode = 0o600
        tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def tail_within(text: str, max_json_bytes: int) -> str:
    """The newest part of ``text`` whose JSON encoding fits in ``max_json_bytes``."""
    if len(json.dumps(text)) <= max_json_bytes:
        return text
    low, high = 0, len(text)  # find the smallest cut that fits
    while low < high:
        middle = (low + high) // 2
        if len(json.dumps(text[middle:])) <= max_json_bytes:
            high = middle
        else:
            low = middle + 1
    return text[low:]


def published_ports(attrs: Mapping[str, Any], network_mode: str) -> dict[str, int]:
    """``{"8000/tcp": 32768}``: the host port each container port answers on.

    With host networking a container port is the host port; with ``none`` nothing is reachable.
    """
    if network_mode == "host":
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        keys = [k for k in str(labels.get(LABEL_PORTS, "")).split(",") if k]
        return {k: int(k.split("/")[0]) for k in keys}
    if network_mode == "none":
        return {}
    result: dict[str, int] = {}
    bindings = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for key, hosts in bindings.items():
        for host in hosts or []:
            port = str(host.get("HostPort") or "")
            if port.isdigit():
                result[key] = int(port)
                break
    return result


def _sparse_labels(container: Any) -> dict[str, str]:
    attrs = container.attrs
    labels = attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}
    return dict(labels)


def _explain(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    if explanation:
        return str(explanation.decode() if isinstance(explanation, bytes) else explanation)
    return str(exc) or exc.__class__.__name__


class DockerRuntime:
    """Starts, stops, lists and reads the logs of pod containers."""

    def __init__(
        self,
        docker_host: str | None = None,
        default_network_mode: str = "bridge",
        node_ids: Iterable[str] | None = None,
        gpu_devices: bool = True,
        mounts: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        self.docker_host = docker_host
        self.gpu_devices = gpu_devices
        # Host paths bound into every container (the agent's --mount), read-only by default.
        self.mounts = tuple(mounts)
        self.default_network_mode = default_network_mode
        # Which node identities' containers this agent manages (its current node id and those
        # it registered as before). None: every container labelled gco.managed=true. Scoping
        # keeps two agents on one engine (tests, a developer's second agent) off each other's
        # pods.
        self.node_ids: set[str] | None = set(node_ids) if node_ids is not None else None
        self._client: Any = None

    # --- engine ---

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                if self.docker_host:
                    self._client = docker.DockerClient(
                        base_url=self.docker_host, timeout=API_TIMEOUT_S
                    )
                else:
                    self._client = docker.from_env(timeout=API_TIMEOUT_S)
            except (DockerException, OSError) as exc:
                raise RuntimeUnavailableError(
                    f"Docker engine unreachable: {_explain(exc)}"
                ) from exc
        return self._client

    def version(self) -> str | None:
        """The engine's version, or None when it does not answer."""
        try:
            return str(self.client.version().get("Version")) or None
        except (DockerException, OSError, ContainerRuntimeError) as exc:
            log(logger, logging.WARNING, "runtime.unreachable", error=_explain(exc))
            return None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # --- queries ---

    def _list(self, pod_id: str | None = None, *, scoped: bool = True) -> list[Any]:
        """Managed containers as sparse objects (labels and status only, one API call)."""
        labels = [f"{LABEL_MANAGED}=true"]
        if pod_id is not None:
            labels.append(f"{LABEL_POD}={pod_id}")
        try:
            found = self.client.containers.list(all=True, filters={"label": labels}, sparse=True)
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailableError(f"Docker engine unreachable: {_explain(exc)}") from exc
        if not scoped or self.node_ids is None:
            return list(found)
        return [c for c in found if _sparse_labels(c).get(LABEL_NODE) in self.node_ids]

    def find(self, pod_id: str) -> Any | None:
        """The managed container of ``pod_id`` (whichever node started it), fully loaded."""
        for container in self._list(pod_id, scoped=False):
            try:
                container.reload()
            except NotFound:
                continue
            except (DockerException, OSError) as exc:
                raise RuntimeUnavailableError(
                    f"Docker engine unreachable: {_explain(exc)}"
                ) from exc
            return container
        return None

    def states(self) -> list[dict[str, Any]]:
        """The state of every container this agent manages (heartbeat ``containers[]``)."""
        states: list[dict[str, Any]] = []
        for container in self._list():
            try:
                container.reload()
            except NotFound:
                continue  # removed between the list and the inspect
            except (DockerException, OSError) as exc:
                raise RuntimeUnavailableError(
                    f"Docker engine unreachable: {_explain(exc)}"
                ) from exc
            states.append(container_state(container.attrs))
        return states

    def managed_pod_ids(self) -> set[str]:
        """Pod ids of the containers this agent manages."""
        return {str(pod) for c in self._list() if (pod := _sparse_labels(c).get(LABEL_POD))}

    # --- operations ---

    def start(self, spec: PodSpec) -> dict[str, Any]:
        """Run the pod's container (or answer with the one that exists, started if stopped).

        Returns the ``start_pod`` result: ``{"container_id", "state", "ports"}``.
        """
        network_mode = spec.network_mode or self.default_network_mode
        try:
            existing = self.find(spec.pod_id)
            if existing is not None and existing.status in ("dead", "removing"):
                self._remove_quietly(existing)  # cannot be started again: make a new one
                existing = None
            if existing is not None:
                container = existing
                if container.status in ("created", "exited"):
                    container.start()
                elif container.status == "paused":
                    container.unpause()
                log(
                    logger,
                    logging.INFO,
                    "runtime.start_existing",
                    pod_id=spec.pod_id,
                    container_id=container.id,
                    status=container.status,
                )
            else:
                self._ensure_image(spec.image)
                for volume in spec.volumes:
                    self.create_volume(volume.name, size_gb=volume.size_gb)
                container = self.client.containers.create(**self.create_options(spec, network_mode))
                try:
                    if spec.authorized_keys:
                        container.put_archive("/", authorized_keys_tar(spec.authorized_keys))
                    container.start()
                except (DockerException, OSError) as exc:
                    # Leave nothing half-made behind: a retried start must start from scratch.
                    self._remove_quietly(container)
                    raise ContainerRuntimeError(
                        f"container for pod {spec.pod_id} failed to start: {_explain(exc)}"
                    ) from exc
                log(
                    logger,
                    logging.INFO,
                    "runtime.started",
                    pod_id=spec.pod_id,
                    container_id=container.id,
                    image=spec.image,
                    gpu_indices=spec.gpu_indices,
                )
            container.reload()
            effective_mode = str(
                (container.attrs.get("HostConfig") or {}).get("NetworkMode") or network_mode
            )
            return {
                "container_id": container.id,
                "state": container_state(container.attrs)["state"],
                "ports": published_ports(container.attrs, effective_mode),
            }
        except ContainerRuntimeError:
            raise
        except (DockerException, OSError) as exc:
            raise ContainerRuntimeError(
                f"could not start pod {spec.pod_id}: {_explain(exc)}"
            ) from exc

    def _ensure_image(self, image: str) -> None:
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        log(logger, logging.INFO, "runtime.pulling", image=image)
        try:
            self.client.images.pull(image)
        except (DockerException, OSError) as exc:
            raise ImageUnavailableError(
                f"image not found: {image!r} is not on this host and could not be pulled "
                f"({_explain(exc)})"
            ) from exc

    def create_options(self, spec: PodSpec, network_mode: str) -> dict[str, Any]:
        labels = {
            LABEL_MANAGED: "true",
            LABEL_POD: spec.pod_id,
            LABEL_NODE: spec.node_id,
            LABEL_COMMAND: spec.command_id,
        }
        kwargs: dict[str, Any] = {
            "image": spec.image,
            "name": container_name(spec.pod_id),
            "environment": dict(spec.env),
            "labels": labels,
            "network_mode": network_mode,
            "restart_policy": {"Name": spec.restart_policy},
        }
        if spec.command is not None:
            kwargs["command"] = list(spec.command)
        binds = {host: {"bind": container, "mode": mode} for host, container, mode in self.mounts}
        binds.update({v.name: {"bind": v.mount_path, "mode": "rw"} for v in spec.volumes})
        if binds:
            kwargs["volumes"] = binds
        if spec.ports:
            if network_mode in NO_PORT_NETWORKS:
                # No bindings on host/none networks; remember the ports so the result can say
                # where a host-network container answers.
                labels[LABEL_PORTS] = ",".join(p.key for p in spec.ports)
            else:
                kwargs["ports"] = {p.key: p.host_port for p in spec.ports}
        if spec.gpu_indices and not self.gpu_devices:
            # Simulated GPUs: nothing to attach; the container still learns which it was given.
            kwargs["environment"].setdefault(
                "NVIDIA_VISIBLE_DEVICES", ",".join(str(i) for i in spec.gpu_indices)
            )
        elif spec.gpu_indices:
            kwargs["device_requests"] = [gpu_device_request(spec)]
        if spec.cpu_limit is not None:
            kwargs["nano_cpus"] = int(round(spec.cpu_limit * 1_000_000_000))
        if spec.memory_limit_mb is not None:
            kwargs["mem_limit"] = f"{spec.memory_limit_mb}m"
            # No swap beyond the limit: a pod over its memory is OOM-killed, not slowed down.
            kwargs["memswap_limit"] = f"{spec.memory_limit_mb}m"
        if spec.shm_size_mb is not None:
            kwargs["shm_size"] = f"{spec.shm_size_mb}m"
        return kwargs

    # --- volumes ---

    def create_volume(self, name: str, *, size_gb: int) -> dict[str, Any]:
        """Create the Docker volume ``name`` (idempotent); ``{"name", "used_bytes"}``."""
        if not name.startswith(VOLUME_PREFIX):
            raise ContainerRuntimeError(f"volume name must start with {VOLUME_PREFIX!r}")
        try:
            try:
                self.client.volumes.get(name)
            except NotFound:
                self.client.volumes.create(
                    name=name,
                    labels={
                        LABEL_MANAGED: "true",
                        LABEL_VOLUME: name.removeprefix(VOLUME_PREFIX),
                        "gco.size_gb": str(size_gb),
                    },
                )
                log(logger, logging.INFO, "runtime.volume_created", volume=name, size_gb=size_gb)
        except (DockerException, OSError) as exc:
            raise ContainerRuntimeError(f"could not create volume {name}: {_explain(exc)}") from exc
        return {"name": name, "used_bytes": 0}

    def delete_volume(self, name: str) -> dict[str, Any]:
        """Remove the Docker volume ``name``; a missing one is already gone."""
        if not name.startswith(VOLUME_PREFIX):
            raise ContainerRuntimeError(f"volume name must start with {VOLUME_PREFIX!r}")
        try:
            self.client.volumes.get(name).remove()
            log(logger, logging.INFO, "runtime.volume_deleted", volume=name)
        except NotFound:
            pass
        except (DockerException, OSError) as exc:
            raise ContainerRuntimeError(f"could not delete volume {name}: {_explain(exc)}") from exc
        return {"name": name, "deleted": True}

    def measure(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Disk usage, measured by the engine (``docker system df``): the managed volumes as
        ``[{"name", "used_bytes"}]`` and each managed container's writable layer by pod id."""
        try:
            usage = self.client.df()
        except (DockerException, OSError) as exc:
            raise RuntimeUnavailableError(f"Docker engine unreachable: {_explain(exc)}") from exc
        volumes = [
            {
                "name": v["Name"],
                "used_bytes": max(0, int((v.get("UsageData") or {}).get("Size") or 0)),
            }
            for v in usage.get("Volumes") or []
            if str(v.get("Name", "")).startswith(VOLUME_PREFIX)
            and (v.get("Labels") or {}).get(LABEL_MANAGED) == "true"
        ]
        layers: dict[str, int] = {}
        for c in usage.get("Containers") or []:
            labels = c.get("Labels") or {}
            if labels.get(LABEL_MANAGED) != "true" or not labels.get(LABEL_POD):
                continue
            if self.node_ids is not None and labels.get(LABEL_NODE) not in self.node_ids:
                continue
            layers[str(labels[LABEL_POD])] = max(0, int(c.get("SizeRw") or 0))
        return volumes, layers

    def stop(self, pod_id: str, timeout: int = 10) -> dict[str, Any]:
        """Stop and remove the pod's container; ``{"state": "removed", "exit_code"}``.

        A pod without a container is already stopped: that succeeds with ``exit_code: null``.
        """
        try:
            container = self.find(pod_id)
            if container is None:
                return {"state": "removed", "exit_code": None}
            exit_code: int | None = None
            try:
                container.stop(timeout=timeout)
                container.reload()
                code = (container.attrs.get("State") or {}).get("ExitCode")
                exit_code = code if isinstance(code, int) else None
            except NotFound:
                return {"state": "removed", "exit_code": None}
            self._remove_quietly(container)
            log(logger, logging.INFO, "runtime.stopped", pod_id=pod_id, exit_code=exit_code)
            return {"state": "removed", "exit_code": exit_code}
        except ContainerRuntimeError:
            raise
        except (DockerException, OSError) as exc:
            raise ContainerRuntimeError(f"could not stop pod {pod_id}: {_explain(exc)}") from exc

    def _remove_quietly(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except NotFound:
            return
        except APIError as exc:
            if exc.status_code == 409:  # removal already in progress elsewhere
                self._wait_gone(container.id)
                return
            raise

    def _wait_gone(self, container_id: str, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            try:
                self.client.containers.get(container_id)
            except NotFound:
                return
            time.sleep(0.2)

    def logs(self, pod_id: str, tail: int = 100) -> str:
        """The last ``tail`` lines of stdout and stderr (the newest 512 KiB as JSON at most)."""
        try:
            container = self.find(pod_id)
            if container is None:
                raise ContainerMissingError(f"no container for pod {pod_id}")
            raw = container.logs(stdout=True, stderr=True, tail=tail)
        except ContainerRuntimeError:
            raise
        except (DockerException, OSError) as exc:
            raise ContainerRuntimeError(
                f"could not read logs of pod {pod_id}: {_explain(exc)}"
            ) from exc
        return tail_within(bytes(raw).decode("utf-8", errors="replace"), MAX_LOG_JSON_BYTES)

    def reconcile(self, wanted_pod_ids: Iterable[str], timeout: int = 10) -> list[str]:
        """Stop and remove every managed container whose pod is not wanted; the pods removed."""
        removed: list[str] = []
        for pod_id in sorted(self.managed_pod_ids() - set(wanted_pod_ids)):
            self.stop(pod_id, timeout=timeout)
            removed.append(pod_id)
        if removed:
            log(logger, logging.INFO, "runtime.reconciled", removed=removed)
        return removed
