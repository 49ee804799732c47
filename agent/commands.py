"""Commands from the heartbeat answer: validated, run off the loop thread, turned into acks.

A slow command (an image pull can take minutes) must not stop the heartbeats, so each command
runs on its own worker thread. Commands for one pod run in the order they arrived; at most
``max_parallel`` run at once. Results wait in the runner until the loop acks them.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from agent import metrics
from agent.log import log
from agent.runtime import (
    RESTART_POLICIES,
    VOLUME_PREFIX,
    ContainerRuntimeError,
    DockerRuntime,
    PodSpec,
    PortSpec,
    VolumeMount,
)
from agent.terminal import OPEN_TERMINAL, TerminalManager, TerminalRequest

logger = logging.getLogger("agent.commands")

START_POD = "start_pod"
STOP_POD = "stop_pod"
FETCH_LOGS = "fetch_logs"
CREATE_VOLUME = "create_volume"
DELETE_VOLUME = "delete_volume"
COMMAND_TYPES = (START_POD, STOP_POD, FETCH_LOGS, OPEN_TERMINAL, CREATE_VOLUME, DELETE_VOLUME)
DEFAULT_STOP_TIMEOUT_S = 10
MAX_STOP_TIMEOUT_S = 600
DEFAULT_LOG_TAIL = 100
MAX_LOG_TAIL = 100_000
MAX_ACK_ERROR_CHARS = 4000  # the server's limit on an ack's error
_POD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VOLUME_NAME = re.compile(r"^gco-vol-[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
_MOUNT_PATH = re.compile(r"^/[A-Za-z0-9_.@+=,/ -]{0,254}$")
MAX_SSH_KEYS = 64


class PayloadError(ValueError):
    """A command payload that does not follow the protocol; the message names the field."""


@dataclass(frozen=True)
class Command:
    id: str
    type: str
    payload: Mapping[str, Any]

    @property
    def pod_id(self) -> str:
        value = self.payload.get("pod_id")
        return value if isinstance(value, str) else ""

    @property
    def request_id(self) -> str | None:
        """The id of the server request that queued this command (servers before 0.3 send
        none); logged with the command so one request can be followed to this host."""
        value = self.payload.get("request_id")
        return value if isinstance(value, str) and value else None

    def request_fields(self) -> dict[str, str]:
        """``{"request_id": …}`` when the command has one (kept with its pending ack)."""
        return {"request_id": self.request_id} if self.request_id else {}


def parse_command(raw: object) -> Command | None:
    """A ``commands[]`` item, or None (logged) when it has no usable id."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str) or not raw["id"]:
        log(logger, logging.ERROR, "command.malformed", command=str(raw)[:300])
        return None
    payload = raw.get("payload")
    return Command(
        id=raw["id"],
        type=str(raw.get("type") or ""),
        payload=payload if isinstance(payload, Mapping) else {},
    )


def ack_body(
    status: str, result: Mapping[str, Any] | None = None, error: str = ""
) -> dict[str, Any]:
    return {"status": status, "result": dict(result or {}), "error": error[:MAX_ACK_ERROR_CHARS]}


# --- payload validation ----------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _pod_id(payload: Mapping[str, Any]) -> str:
    pod_id = payload.get("pod_id")
    if not isinstance(pod_id, str) or not _POD_ID.match(pod_id):
        raise PayloadError("pod_id: must be a non-empty id of letters, digits, '-', '_' or '.'")
    return pod_id


def _optional_int(payload: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = payload.get(name)
    if value is None:
        return default
    if not _is_int(value) or not low <= value <= high:
        raise PayloadError(f"{name}: must be an integer from {low} to {high}")
    return int(value)


def parse_ports(value: object) -> list[PortSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError("ports: must be a list")
    ports: list[PortSpec] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise PayloadError(f"ports[{i}]: must be an object")
        container_port = item.get("container_port")
        if not _is_int(container_port) or not 1 <= container_port <= 65535:
            raise PayloadError(f"ports[{i}].container_port: must be an integer from 1 to 65535")
        protocol = item.get("protocol") or "tcp"
        if protocol not in ("tcp", "udp"):
            raise PayloadError(f"ports[{i}].protocol: must be 'tcp' or 'udp'")
        host_port = item.get("host_port")
        if host_port is not None and (not _is_int(host_port) or not 1 <= host_port <= 65535):
            raise PayloadError(f"ports[{i}].host_port: must be null or an integer 1-65535")
        ports.append(PortSpec(int(container_port), str(protocol), host_port))
    return ports


def _volume_name(value: object, field_name: str) -> str:
    if not isinstance(value, str) or not _VOLUME_NAME.match(value):
        raise PayloadError(f"{field_name}: must be a volume name starting with {VOLUME_PREFIX!r}")
    return value


def _size_gb(value: object, field_name: str) -> int:
    if not _is_int(value) or not 1 <= value <= 1_000_000:
        raise PayloadError(f"{field_name}: must be an integer number of GB from 1 to 1000000")
    return int(value)


def parse_volumes(value: object) -> list[VolumeMount]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PayloadError("volumes: must be a list")
    mounts: list[VolumeMount] = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise PayloadError(f"volumes[{i}]: must be an object")
        path = item.get("mount_path")
        if not isinstance(path, str) or not _MOUNT_PATH.match(path) or "/../" in f"{path}/":
            raise PayloadError(f"volumes[{i}].mount_path: must be an absolute path inside /")
        mounts.append(
            VolumeMount(
                name=_volume_name(item.get("name"), f"volumes[{i}].name"),
                mount_path=path,
                size_gb=_size_gb(item.get("size_gb"), f"volumes[{i}].size_gb"),
            )
        )
    return mounts


def _string_list(payload: Mapping[str, Any], name: str, limit: int) -> list[str]:
    value = payload.get(name) or []
    if (
        not isinstance(value, list)
        or len(value) > limit
        or not all(isinstance(v, str) and v.strip() and "\n" not in v.strip() for v in value)
    ):
        raise PayloadError(f"{name}: must be a list of at most {limit} one-line strings")
    return [v.strip() for v in value]


def parse_pod_spec(payload: Mapping[str, Any], *, node_id: str, command_id: str) -> PodSpec:
    """A ``start_pod`` payload as a ``PodSpec``; ``PayloadError`` names the first bad field."""
    pod_id = _pod_id(payload)
    image = payload.get("image")
    if not isinstance(image, str) or not image.strip():
        raise PayloadError("image: must be a non-empty string")
    command = payload.get("command")
    if command is not None and (
        not isinstance(command, list) or not all(isinstance(a, str) for a in command)
    ):
        raise PayloadError("command: must be null or a list of strings")
    env = payload.get("env") or {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in env.items()
    ):
        raise PayloadError("env: must be an object of string to string")
    gpu_indices = payload.get("gpu_indices") or []
    if (
        not isinstance(gpu_indices, list)
        or not all(_is_int(i) and i >= 0 for i in gpu_indices)
        or len(set(gpu_indices)) != len(gpu_indices)
    ):
        raise PayloadError("gpu_indices: must be a list of distinct non-negative integers")
    cpu_limit = payload.get("cpu_limit")
    if cpu_limit is not None and (
        isinstance(cpu_limit, bool) or not isinstance(cpu_limit, int | float) or cpu_limit <= 0
    ):
        raise PayloadError("cpu_limit: must be null or a positive number of CPUs")
    memory_limit_mb = payload.get("memory_limit_mb")
    if memory_limit_mb is not None and (not _is_int(memory_limit_mb) or memory_limit_mb < 6):
        raise PayloadError("memory_limit_mb: must be null or an integer of at least 6")
    shm_size_mb = payload.get("shm_size_mb")
    if shm_size_mb is not None and (not _is_int(shm_size_mb) or shm_size_mb < 1):
        raise PayloadError("shm_size_mb: must be null or a positive integer")
    disk_limit_gb = payload.get("disk_limit_gb")
    if disk_limit_gb is not None:
        disk_limit_gb = _size_gb(disk_limit_gb, "disk_limit_gb")
    gpu_uuids = _string_list(payload, "gpu_uuids", 64)
    if gpu_uuids and len(gpu_uuids) != len(gpu_indices):
        raise PayloadError("gpu_uuids: must name as many GPUs as gpu_indices")
    restart_policy = payload.get("restart_policy") or "no"
    if restart_policy not in RESTART_POLICIES:
        raise PayloadError(f"restart_policy: must be one of {', '.join(RESTART_POLICIES)}")
    network_mode = payload.get("network_mode")
    if network_mode is not None and (not isinstance(network_mode, str) or not network_mode):
        raise PayloadError("network_mode: must be null or a non-empty string")
    return PodSpec(
        pod_id=pod_id,
        image=image.strip(),
        command=list(command) if command is not None else None,
        env=dict(env),
        ports=parse_ports(payload.get("ports")),
        gpu_indices=list(gpu_indices),
        cpu_limit=float(cpu_limit) if cpu_limit is not None else None,
        memory_limit_mb=memory_limit_mb,
        shm_size_mb=shm_size_mb,
        disk_limit_gb=disk_limit_gb,
        gpu_uuids=gpu_uuids,
        volumes=parse_volumes(payload.get("volumes")),
        authorized_keys=_string_list(payload, "authorized_keys", MAX_SSH_KEYS),
        restart_policy=str(restart_policy),
        network_mode=network_mode,
        node_id=node_id,
        command_id=command_id,
    )


def parse_terminal_request(payload: Mapping[str, Any]) -> TerminalRequest:
    """An ``open_terminal`` payload; ``PayloadError`` names the first bad field."""
    pod_id = _pod_id(payload)
    session_id = payload.get("session_id")
    if not isinstance(session_id, str) or not _POD_ID.match(session_id):
        raise PayloadError("session_id: must be a non-empty id")
    token = payload.get("token")
    if not isinstance(token, str) or not token:
        raise PayloadError("token: must be a non-empty string (used tokens are wiped)")
    return TerminalRequest(pod_id=pod_id, session_id=session_id, token=token)


def prepare(
    command: Command,
    runtime: DockerRuntime,
    node_id: str,
    terminals: TerminalManager | None = None,
) -> Callable[[], dict[str, Any]]:
    """Validate ``command`` now and return the work that runs it (returning its result).

    Raises ``PayloadError`` for a malformed payload or an unknown type.
    """
    payload = command.payload
    if command.type == START_POD:
        spec = parse_pod_spec(payload, node_id=node_id, command_id=command.id)
        return lambda: runtime.start(spec)
    if command.type == STOP_POD:
        pod_id = _pod_id(payload)
        timeout = _optional_int(payload, "timeout_s", DEFAULT_STOP_TIMEOUT_S, 0, MAX_STOP_TIMEOUT_S)
        return lambda: runtime.stop(pod_id, timeout=timeout)
    if command.type == FETCH_LOGS:
        pod_id = _pod_id(payload)
        tail = _optional_int(payload, "tail", DEFAULT_LOG_TAIL, 1, MAX_LOG_TAIL)
        return lambda: {"logs": runtime.logs(pod_id, tail=tail)}
    if command.type == OPEN_TERMINAL and terminals is not None:
        request = parse_terminal_request(payload)
        return lambda: terminals.open(request)
    if command.type == CREATE_VOLUME:
        name = _volume_name(payload.get("name"), "name")
        size_gb = _size_gb(payload.get("size_gb"), "size_gb")
        return lambda: runtime.create_volume(name, size_gb=size_gb)
    if command.type == DELETE_VOLUME:
        name = _volume_name(payload.get("name"), "name")
        return lambda: runtime.delete_volume(name)
    raise PayloadError(f"type: unknown command type {command.type!r}")


# --- the runner ------------------------------------------------------------------------------


class CommandRunner:
    """Runs commands on daemon threads, in order per pod, and collects their ack bodies."""

    def __init__(
        self,
        runtime: DockerRuntime,
        max_parallel: int = 4,
        terminals: TerminalManager | None = None,
    ) -> None:
        self.runtime = runtime
        self.terminals = terminals
        self._lock = threading.Condition()
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._tails: dict[str, threading.Thread] = {}
        self._busy_pods: Counter[str] = Counter()
        self._in_flight: dict[str, Command] = {}
        self._done: list[tuple[Command, dict[str, Any]]] = []

    def submit(self, command: Command, node_id: str) -> None:
        """Queue ``command``; a malformed one is answered at once with a failed ack body."""
        try:
            work = prepare(command, self.runtime, node_id, self.terminals)
        except PayloadError as exc:
            log(
                logger,
                logging.ERROR,
                "command.rejected",
                command_id=command.id,
                request_id=command.request_id,
                error=str(exc),
            )
            metrics.COMMANDS.labels(command.type or "?", "rejected").inc()
            with self._lock:
                self._done.append((command, ack_body("failed", error=f"invalid payload: {exc}")))
            return
        log(
            logger,
            logging.INFO,
            "command.accepted",
            command_id=command.id,
            type=command.type,
            pod_id=command.pod_id,
            request_id=command.request_id,
        )
        with self._lock:
            self._in_flight[command.id] = command
        self._spawn(command.pod_id, lambda: self._execute(command, work))

    def submit_removal(self, pod_id: str, timeout: int = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Stop and remove an unwanted pod's container (reconciliation; nothing to ack)."""

        def remove() -> None:
            try:
                self.runtime.stop(pod_id, timeout=timeout)
                log(logger, logging.INFO, "reconcile.removed", pod_id=pod_id)
            except ContainerRuntimeError as exc:
                log(logger, logging.WARNING, "reconcile.failed", pod_id=pod_id, error=str(exc))

        self._spawn(pod_id, remove)

    def _spawn(self, pod_id: str, fn: Callable[[], None]) -> None:
        with self._lock:
            previous = self._tails.get(pod_id)
            thread = threading.Thread(
                target=self._run, args=(pod_id, previous, fn), name=f"pod-{pod_id}", daemon=True
            )
            self._tails[pod_id] = thread
            self._busy_pods[pod_id] += 1
        thread.start()

    def _run(self, pod_id: str, previous: threading.Thread | None, fn: Callable[[], None]) -> None:
        try:
            if previous is not None:
                previous.join()  # commands of one pod keep their order
            with self._slots:
                fn()
        finally:
            with self._lock:
                self._busy_pods[pod_id] -= 1
                if self._busy_pods[pod_id] <= 0:
                    del self._busy_pods[pod_id]
                if self._tails.get(pod_id) is threading.current_thread():
                    del self._tails[pod_id]
                self._lock.notify_all()

    def _execute(self, command: Command, work: Callable[[], dict[str, Any]]) -> None:
        try:
            body = ack_body("succeeded", work())
        except ContainerRuntimeError as exc:
            body = ack_body("failed", error=str(exc))
        except Exception as exc:  # a bug must fail the command, not kill the worker silently
            logger.exception("command.crashed")
            body = ack_body("failed", error=f"agent error: {exc!r}")
        log(
            logger,
            logging.INFO if body["status"] == "succeeded" else logging.WARNING,
            "command.finished",
            command_id=command.id,
            type=command.type,
            pod_id=command.pod_id,
            request_id=command.request_id,
            status=body["status"],
            error=body["error"],
        )
        metrics.COMMANDS.labels(command.type, body["status"]).inc()
        with self._lock:
            self._in_flight.pop(command.id, None)
            self._done.append((command, body))
            self._lock.notify_all()

    # --- what the loop asks ---

    def take_finished(self) -> list[tuple[Command, dict[str, Any]]]:
        with self._lock:
            finished, self._done = self._done, []
        return finished

    def is_in_flight(self, command_id: str) -> bool:
        """Queued, running, or finished with its ack not yet taken (a heartbeat between the
        finish and the next flush delivers the command again: it must not run twice)."""
        with self._lock:
            return command_id in self._in_flight or any(c.id == command_id for c, _ in self._done)

    def starting_pods(self) -> set[str]:
        with self._lock:
            return {c.pod_id for c in self._in_flight.values() if c.type == START_POD}

    def busy_pods(self) -> set[str]:
        with self._lock:
            return set(self._busy_pods)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no work is queued or running (True), or ``timeout`` passes (False)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._busy_pods, timeout=timeout)

    def wait_finished(self, timeout: float) -> None:
        """Wait until every submitted command has a result, or ``timeout`` passes."""
        with self._lock:
            self._lock.wait_for(lambda: not self._in_flight, timeout=timeout)
