"""``python -m agent`` runs the agent; ``python -m agent detect`` prints what it would report."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from agent import __version__
from agent.config import EXIT_CONFIG, AgentConfig, ConfigError, load_config
from agent.gpu import detect_gpus
from agent.log import log, setup_logging
from agent.runtime import DockerRuntime
from agent.system import SystemProbe

logger = logging.getLogger("agent")


def detect(config: AgentConfig) -> dict[str, Any]:
    """The GPUs and host facts this agent would register with, plus current telemetry."""
    report = detect_gpus()
    runtime = DockerRuntime(config.docker_host, config.network_mode, gpu_devices=config.gpu_devices)
    try:
        docker_version = runtime.version()
    finally:
        runtime.close()
    probe = SystemProbe()
    return {
        "agent_version": __version__,
        "hostname": socket.gethostname(),
        "gpu_source": report.source,
        "driver_version": report.driver_version,
        "cuda_version": report.cuda_version,
        "gpus": [
            {
                **gpu.registration(),
                **gpu.telemetry(),
                "power_limit_w": gpu.power_limit_w,
                "pci_bus_id": gpu.pci_bus_id,
            }
            for gpu in report.gpus
        ],
        "system": probe.info(server_url=config.server_url, docker_version=docker_version),
        "telemetry": probe.telemetry(),
    }


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    try:
        config = load_config(
            sys.argv[1:] if argv is None else argv, os.environ if env is None else env
        )
    except ConfigError as exc:
        setup_logging("info")
        log(logger, logging.ERROR, "config.invalid", error=str(exc))
        return EXIT_CONFIG
    setup_logging(config.log_level)

    if config.command == "detect":
        print(json.dumps(detect(config), indent=2))
        return 0

    from agent.main import Agent  # only the daemon needs the loop's imports

    try:
        agent = Agent(config)
        agent.check_credentials()
    except ConfigError as exc:
        log(logger, logging.ERROR, "config.invalid", error=str(exc))
        return EXIT_CONFIG
    agent.install_signal_handlers()
    if config.metrics_port is not None:
        from agent import metrics

        try:
            metrics.serve(config.metrics_port)
        except OSError as exc:
            log(
                logger,
                logging.ERROR,
                "metrics.unavailable",
                port=config.metrics_port,
                error=str(exc),
            )
            return EXIT_CONFIG
        log(
            logger,
            logging.INFO,
            "metrics.serving",
            address=f"{metrics.METRICS_HOST}:{config.metrics_port}",
        )
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
