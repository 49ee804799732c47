"""Multi-process fixtures: the live server, real agent processes, the real Docker engine."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from apps.nodes.models import Node, NodeStatus
from apps.proxy.routing import router, usage_buffer
from backends.localimage import agent_mounts, ensure_image
from tests.agent.conftest import busybox_image, docker_client  # noqa: F401 - shared fixtures
from tests.e2e.portal_conftest import browser, browser_guard, new_page, page  # noqa: F401
from tests.factories import BOOTSTRAP as FACTORY_BOOTSTRAP
from tests.support import ROOT, AsgiServer, stop_processes, wait_for

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
    yield
    ours = {str(pk) for pk in Node.objects.values_list("pk", flat=True)}
    for container in docker_client.containers.list(all=True, filters={"label": "gco.managed=true"}):
        if container.labels.get("gco.node_id") in ours:
            container.remove(force=True)


# The model deployment tests' servers: /v1 under uvicorn, and a real agent that runs replicas.
@pytest.fixture
def proxy_server(transactional_db):
    """Our ASGI app (with /v1) under uvicorn in this process, beside the live server."""
    router.invalidate()
    server = AsgiServer().start()
    yield server
    server.stop()
    usage_buffer.take()  # the test database goes away with the test


@pytest.fixture
def local_agent(live_server, settings, tmp_path, docker_client):  # noqa: F811 - the fixture
    """Start a real agent with host networking and the mounts for `venv`."""
    settings.NODE_BOOTSTRAP_TOKEN = FACTORY_BOOTSTRAP
    settings.NODE_HEARTBEAT_INTERVAL = 1
    ensure_image(docker_client)
    started: list[subprocess.Popen] = []

    def start(venv: Path) -> subprocess.Popen:
        args = [
            sys.executable,
            "-m",
            "agent",
            "--server",
            live_server.url,
            "--bootstrap-token",
            FACTORY_BOOTSTRAP,
            "--state-dir",
            str(tmp_path / "agent-state"),
            "--network-mode",
            "host",
        ]
        for mount in agent_mounts(venv):
            args += ["--mount", mount]
        log = (tmp_path / "agent.log").open("ab")
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        started.append(proc)
        wait_for(lambda: Node.objects.filter(status=NodeStatus.ONLINE).exists(), "agent online")
        return proc

    yield start
    stop_processes(started)


# A real agent registering with a provider's key (`--provider-key`, as the installer runs it).
@pytest.fixture
def start_agent(live_server, settings, tmp_path):
    settings.NODE_HEARTBEAT_INTERVAL = 1
    started: list[subprocess.Popen] = []
    log_path = tmp_path / "agent.log"

    def start(provider_key: str) -> subprocess.Popen:
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "--server",
                live_server.url,
                "--provider-key",
                provider_key,
                "--state-dir",
                str(Path(tmp_path) / "state"),
                "--network-mode",
                "none",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
