"""Multi-process fixtures: the live server, real agent processes, the real Docker engine."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import busybox_image, docker_client  # noqa: F401 - shared fixtures
from tests.e2e.portal_conftest import browser, browser_guard, new_page, page  # noqa: F401
from tests.support import ROOT

BOOTSTRAP = "bt_e2e-bootstrap-token"


class AgentProcess:
    def __init__(self, server: str, state_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "--server",
                server,
                "--bootstrap-token",
                BOOTSTRAP,
                "--state-dir",
                str(state_dir),
                "--network-mode",
                "none",
                "--log-level",
                "DEBUG",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture
def agent_env(live_server, settings, tmp_path) -> Iterator[Callable[[], AgentProcess]]:
    settings.NODE_BOOTSTRAP_TOKEN = BOOTSTRAP
    settings.NODE_HEARTBEAT_INTERVAL = 1
    settings.NODE_OFFLINE_GRACE_S = 5  # a stopped agent's node goes OFFLINE within the test
    started: list[AgentProcess] = []

    def start() -> AgentProcess:
        agent = AgentProcess(live_server.url, tmp_path / "state", tmp_path / "agent.log")
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.proc.poll() is None:
            agent.stop(signal.SIGKILL)


@pytest.fixture
def cleanup_containers(docker_client) -> Iterator[None]:  # noqa: F811 - the fixture
    """Remove the containers this test's agents started (only theirs: other test runs on the
    same Docker engine, e.g. another checkout's suite, keep their own)."""
    from apps.nodes.models import Node

    yield
    ours = {str(pk) for pk in Node.objects.values_list("pk", flat=True)}
    for container in docker_client.containers.list(all=True, filters={"label": "gco.managed=true"}):
        if container.labels.get("gco.node_id") in ours:
            container.remove(force=True)
