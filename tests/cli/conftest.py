"""The CLI's tests run `python -m gco` as a subprocess against a live server; the e2e ones
share the e2e fixtures (a real agent on the real Docker engine)."""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent.conftest import busybox_image, docker_client  # noqa: F401 - shared fixtures
from tests.e2e.conftest import agent_env, cleanup_containers  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gco_env(tmp_path) -> dict[str, str]:
    """The environment of a user's shell: their own config dir, no key in it yet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GCO_")}
    env.update(
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PYTHONPATH=str(ROOT / "cli" / "src"),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def gco(gco_env) -> Callable[..., subprocess.CompletedProcess]:
    """Run `gco ARGS…` and return its exit code, stdout and stderr."""

    def run(*args: str, stdin: str = "", timeout: float = 180, **env: str):
        return subprocess.run(
            [sys.executable, "-m", "gco", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**gco_env, **env},
            cwd=ROOT,
            timeout=timeout,
        )

    return run
