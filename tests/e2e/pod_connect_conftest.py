"""Shared set-up for the pod-connect tests (terminal, port proxy): our ASGI app under uvicorn
in this process (WebSockets and streaming, as production serves them), a real agent process
talking to it, and a RUNNING pod of the test's owner on the agent's node (a real container)."""

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from apps.nodes import services as node_services
from apps.nodes.models import Node, NodeStatus
from apps.pods.models import Pod, PodStatus
from tests.factories import BOOTSTRAP
from tests.support import ROOT, AsgiServer, stop_processes, wait_for


@pytest.fixture
def asgi_server(transactional_db) -> Iterator[AsgiServer]:
    server = AsgiServer().start()
    yield server
    server.stop()


@pytest.fixture
def connect_agent(asgi_server, settings, tmp_path) -> Iterator[Callable[..., Node]]:
    """Start `python -m agent` against the ASGI server; returns its node once ONLINE."""
    settings.NODE_BOOTSTRAP_TOKEN = BOOTSTRAP
    settings.NODE_HEARTBEAT_INTERVAL = 1
    started: list[subprocess.Popen] = []

    def start(network_mode: str = "none", mounts: list[str] = ()) -> Node:  # type: ignore[assignment]
        log = (tmp_path / "agent.log").open("ab")
        extra = [arg for mount in mounts for arg in ("--mount", mount)]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent",
                "--server",
                asgi_server.url,
                "--bootstrap-token",
                BOOTSTRAP,
                "--state-dir",
                str(tmp_path / "agent-state"),
                "--network-mode",
                network_mode,
                *extra,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started.append(proc)
        return wait_for(
            lambda: Node.objects.filter(status=NodeStatus.ONLINE).first(), "the agent ONLINE"
        )

    yield start
    stop_processes(started)


def running_pod(
    owner: Any,
    node: Node,
    image: str,
    command: list[str],
    *,
    ports: list[int] = (),  # type: ignore[assignment]
    network_mode: str = "none",
) -> Pod:
    """A pod of `owner` placed on `node`, started by the real agent, once RUNNING."""
    pod = Pod.objects.create(
        owner=owner,
        name="connect-test",
        image=image,
        command=command,
        ports=[{"container_port": p, "protocol": "tcp"} for p in ports],
        gpu_model="CPU",
        gpu_count=0,
        status=PodStatus.SCHEDULED,
        node=node,
        price_per_gpu_hour=0,
    )
    node_services.workload_start(
        node=node,
        pod_id=pod.pk,
        spec={
            "image": image,
            "command": command,
            "ports": [{"container_port": p, "protocol": "tcp", "host_port": p} for p in ports],
            "network_mode": network_mode,
        },
    )
    wait_for(
        lambda: Pod.objects.filter(pk=pod.pk, status=PodStatus.RUNNING).exists(),
        "the pod RUNNING",
    )
    pod.refresh_from_db()
    return pod


def session_cookie(user: Any) -> dict[str, str]:
    """A signed-in session for `user` (what the login form would set)."""
    client = Client()
    client.force_login(user)
    return {
        "name": django_settings.SESSION_COOKIE_NAME,
        "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
    }


def browser_login(page: Any, site: str, user: Any) -> None:
    page.context.add_cookies([{**session_cookie(user), "url": site}])


__all__ = ["ROOT", "Path", "browser_login", "running_pod", "session_cookie"]
