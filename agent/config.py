"""Agent configuration from ``GPU_AGENT_*`` environment variables and command-line flags.

Flags win over the environment. Validation happens at start-up: a problem is a ``ConfigError``
whose message names the flag and the variable, and ``python -m agent`` exits with code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent import __version__

EXIT_CONFIG = 2
RUNTIMES = ("docker",)
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_NETWORK_MODE = "bridge"
DEFAULT_STATE_DIR = "~/.gco-agent"


class ConfigError(Exception):
    """The configuration cannot work; the message says which setting and why."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to run, already validated for form."""

    command: str
    server_url: str | None
    registration_token: str | None
    state_dir: Path
    heartbeat_interval: float
    runtime: str
    network_mode: str
    provider_instance_id: str | None
    docker_host: str | None
    log_level: str
    # Attach the GPUs to pod containers (Docker device requests through the NVIDIA runtime).
    # Off only on hosts whose GPUs are simulated (the sourcing simulators' machines).
    gpu_devices: bool = True
    # Host paths bound into every pod container: (host, container, "ro" | "rw"). For a
    # developer's local agent (the CPU model backends run from the host's Python); the server
    # cannot ask for mounts, only this host's operator can grant them.
    mounts: tuple[tuple[str, str, str], ...] = ()
    # How often (seconds) volumes and container writable layers are measured for their
    # quotas; a measurement walks the files, so not on every heartbeat.
    measure_interval: float = 30.0
    # Serve Prometheus metrics on 127.0.0.1 at this port (None: not served).
    metrics_port: int | None = None

    def require_server(self) -> str:
        """The server URL, or a ``ConfigError`` naming the variable when it is missing."""
        if not self.server_url:
            raise ConfigError(
                "the server URL is required: set GPU_AGENT_SERVER_URL or pass --server"
            )
        return self.server_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m agent",
        description="GPU host agent: registers this host, heartbeats and runs pod containers.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=("run", "detect"),
        default="run",
        help="run the agent (default) or print the detected GPUs and system as JSON",
    )
    parser.add_argument("--version", action="version", version=f"gco-agent {__version__}")
    parser.add_argument("--server", help="server base URL [GPU_AGENT_SERVER_URL]")
    parser.add_argument("--provider-key", help="provider key pk_… [GPU_AGENT_PROVIDER_KEY]")
    parser.add_argument(
        "--bootstrap-token", help="platform bootstrap token [GPU_AGENT_BOOTSTRAP_TOKEN]"
    )
    parser.add_argument("--state-dir", help=f"[GPU_AGENT_STATE_DIR] (default {DEFAULT_STATE_DIR})")
    parser.add_argument(
        "--heartbeat-interval",
        help="seconds (default 10); the server's answer overrides it "
        "[GPU_AGENT_HEARTBEAT_INTERVAL]",
    )
    parser.add_argument("--runtime", help="container runtime: docker [GPU_AGENT_RUNTIME]")
    parser.add_argument(
        "--network-mode",
        help="default container network mode [GPU_AGENT_NETWORK_MODE] (default bridge)",
    )
    parser.add_argument(
        "--provider-instance-id",
        help="upstream instance id this host runs on [GPU_AGENT_PROVIDER_INSTANCE_ID]",
    )
    parser.add_argument("--docker-host", help="Docker engine address [DOCKER_HOST]")
    parser.add_argument(
        "--gpu-devices",
        help="on|off: attach GPUs to containers via the NVIDIA runtime (default on; off only "
        "for simulated GPUs) [GPU_AGENT_GPU_DEVICES]",
    )
    parser.add_argument(
        "--mount",
        action="append",
        default=None,
        metavar="HOST:CONTAINER[:ro|rw]",
        help="bind a host path into every pod container, repeatable (default read-only) "
        "[GPU_AGENT_MOUNTS, comma-separated]",
    )
    parser.add_argument(
        "--measure-interval",
        help="seconds between disk-usage measurements of volumes and containers, 1-86400 "
        "(default 30) [GPU_AGENT_MEASURE_INTERVAL]",
    )
    parser.add_argument("--log-level", help="debug|info|warning|error [GPU_AGENT_LOG_LEVEL]")
    parser.add_argument(
        "--metrics-port",
        help="serve Prometheus metrics on 127.0.0.1 at this port, 1024-65535 (default: off) "
        "[GPU_AGENT_METRICS_PORT]",
    )
    return parser


def _pick(flag: str | None, env: Mapping[str, str], name: str) -> str | None:
    if flag is not None and flag.strip():
        return flag.strip()
    value = env.get(name, "").strip()
    return value or None


def parse_mount(text: str) -> tuple[str, str, str]:
    """``/host:/container[:ro|rw]`` → ``(host, container, mode)``; read-only by default."""
    parts = text.strip().split(":")
    if len(parts) == 2:
        parts.append("ro")
    if len(parts) != 3 or parts[2] not in ("ro", "rw"):
        raise ConfigError(
            f"GPU_AGENT_MOUNTS / --mount must be HOST:CONTAINER[:ro|rw], got {text!r}"
        )
    host, container, mode = parts
    if not host.startswith("/") or not container.startswith("/"):
        raise ConfigError(
            f"GPU_AGENT_MOUNTS / --mount needs absolute paths on both sides, got {text!r}"
        )
    return host, container, mode


def load_config(argv: Sequence[str], env: Mapping[str, str]) -> AgentConfig:
    """Parse ``argv`` over ``env``; raise ``ConfigError`` for malformed values.

    Whether a server URL and a registration token are needed depends on the command and on a
    saved node token, so those are checked by the caller (see ``require_server``).
    """
    args = build_parser().parse_args(list(argv))

    server_url = _pick(args.server, env, "GPU_AGENT_SERVER_URL")
    if server_url is not None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"GPU_AGENT_SERVER_URL / --server must be an http(s) URL, got {server_url!r}"
            )
        server_url = server_url.rstrip("/")

    # Either credential serves as the registration token; a provider key wins over the
    # platform bootstrap token when both are set.
    registration_token = _pick(args.provider_key, env, "GPU_AGENT_PROVIDER_KEY") or _pick(
        args.bootstrap_token, env, "GPU_AGENT_BOOTSTRAP_TOKEN"
    )

    state_dir = Path(
        _pick(args.state_dir, env, "GPU_AGENT_STATE_DIR") or DEFAULT_STATE_DIR
    ).expanduser()

    raw_interval = _pick(args.heartbeat_interval, env, "GPU_AGENT_HEARTBEAT_INTERVAL")
    heartbeat_interval = DEFAULT_HEARTBEAT_INTERVAL
    if raw_interval is not None:
        try:
            heartbeat_interval = float(raw_interval)
        except ValueError:
            heartbeat_interval = -1.0
        if not 0.1 <= heartbeat_interval <= 3600:
            raise ConfigError(
                "GPU_AGENT_HEARTBEAT_INTERVAL / --heartbeat-interval must be a number of "
                f"seconds between 0.1 and 3600, got {raw_interval!r}"
            )

    runtime = (_pick(args.runtime, env, "GPU_AGENT_RUNTIME") or "docker").lower()
    if runtime not in RUNTIMES:
        raise ConfigError(
            f"GPU_AGENT_RUNTIME / --runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}"
        )

    network_mode = _pick(args.network_mode, env, "GPU_AGENT_NETWORK_MODE") or DEFAULT_NETWORK_MODE

    log_level = (_pick(args.log_level, env, "GPU_AGENT_LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(
            f"GPU_AGENT_LOG_LEVEL / --log-level must be one of {', '.join(LOG_LEVELS)}, "
            f"got {log_level!r}"
        )

    gpu_devices_raw = (_pick(args.gpu_devices, env, "GPU_AGENT_GPU_DEVICES") or "on").lower()
    if gpu_devices_raw not in ("on", "off"):
        raise ConfigError(
            f"GPU_AGENT_GPU_DEVICES / --gpu-devices must be on or off, got {gpu_devices_raw!r}"
        )
    raw_mounts = list(args.mount or []) or [
        m for m in env.get("GPU_AGENT_MOUNTS", "").split(",") if m.strip()
    ]
    mounts = tuple(parse_mount(m) for m in raw_mounts)

    raw_measure = _pick(args.measure_interval, env, "GPU_AGENT_MEASURE_INTERVAL")
    measure_interval = 30.0
    if raw_measure is not None:
        try:
            measure_interval = float(raw_measure)
        except ValueError:
            measure_interval = -1.0
        if not 1 <= measure_interval <= 86400:
            raise ConfigError(
                "GPU_AGENT_MEASURE_INTERVAL / --measure-interval must be a number of seconds "
                f"between 1 and 86400, got {raw_measure!r}"
            )

    raw_metrics_port = _pick(args.metrics_port, env, "GPU_AGENT_METRICS_PORT")
    metrics_port = None
    if raw_metrics_port:
        metrics_port = int(raw_metrics_port) if raw_metrics_port.isdigit() else -1
        if not 1024 <= metrics_port <= 65535:
            raise ConfigError(
                "GPU_AGENT_METRICS_PORT / --metrics-port must be a port between 1024 and 65535, "
                f"got {raw_metrics_port!r}"
            )

    return AgentConfig(
        command=args.command,
        server_url=server_url,
        registration_token=registration_token,
        state_dir=state_dir,
        heartbeat_interval=heartbeat_interval,
        runtime=runtime,
        network_mode=network_mode,
        provider_instance_id=_pick(
            args.provider_instance_id, env, "GPU_AGENT_PROVIDER_INSTANCE_ID"
        ),
        docker_host=_pick(args.docker_host, env, "DOCKER_HOST"),
        log_level=log_level,
        gpu_devices=gpu_devices_raw == "on",
        mounts=mounts,
        measure_interval=measure_interval,
        metrics_port=metrics_port,
    )
