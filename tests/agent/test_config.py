"""Start-up configuration: env and flags, and refusal (exit 2) with the variable named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def run_agent(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m agent`` with only the given environment (plus what Python needs)."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": env.pop("HOME", "/nonexistent"),
    }
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_server_url_exits_2_naming_the_variable(tmp_path: Path) -> None:
    # given a registration token but no server URL
    env = {"GPU_AGENT_PROVIDER_KEY": "pk_test", "GPU_AGENT_STATE_DIR": str(tmp_path)}

    # when the agent starts
    done = run_agent(env=env)

    # then it refuses with exit code 2 and says which variable is missing
    assert done.returncode == 2
    assert "GPU_AGENT_SERVER_URL" in done.stderr
    assert "--server" in done.stderr


def test_missing_registration_token_exits_2_naming_the_variables(tmp_path: Path) -> None:
    # given a server URL, no token and no saved node token
    env = {"GPU_AGENT_SERVER_URL": "http://127.0.0.1:9", "GPU_AGENT_STATE_DIR": str(tmp_path)}

    # when the agent starts
    done = run_agent(env=env)

    # then it refuses with exit code 2, naming both ways to give a token
    assert done.returncode == 2
    assert "GPU_AGENT_PROVIDER_KEY" in done.stderr
    assert "GPU_AGENT_BOOTSTRAP_TOKEN" in done.stderr
    assert "config.invalid" in done.stderr


def test_a_saved_node_token_needs_no_registration_token(tmp_path: Path) -> None:
    # given a saved token for this server (from an earlier registration)
    from agent.state import AgentState, StateStore

    StateStore(tmp_path).save(
        AgentState(server_url="http://127.0.0.1:9", node_id="n1", node_token="nt_saved")
    )
    config = load_config(["--server", "http://127.0.0.1:9", "--state-dir", str(tmp_path)], env={})

    # when the credentials are checked
    from agent.main import Agent

    agent = Agent(config)
    try:
        agent.check_credentials()  # then nothing is raised
    finally:
        agent.client.close()


def test_bad_values_exit_2(tmp_path: Path) -> None:
    for args, variable in [
        (["--heartbeat-interval", "0"], "GPU_AGENT_HEARTBEAT_INTERVAL"),
        (["--runtime", "podman"], "GPU_AGENT_RUNTIME"),
        (["--server", "ftp://x"], "GPU_AGENT_SERVER_URL"),
    ]:
        done = run_agent(*args, env={"GPU_AGENT_STATE_DIR": str(tmp_path)})
        assert done.returncode == 2, args
        assert variable in done.stderr, args


def test_flags_win_over_environment(tmp_path: Path) -> None:
    # given both env vars and flags
    env = {
        "GPU_AGENT_SERVER_URL": "http://env.invalid:8000",
        "GPU_AGENT_BOOTSTRAP_TOKEN": "boot_env",
        "GPU_AGENT_HEARTBEAT_INTERVAL": "30",
        "GPU_AGENT_NETWORK_MODE": "host",
        "GPU_AGENT_PROVIDER_INSTANCE_ID": "i-env",
        "DOCKER_HOST": "unix:///run/env.sock",
    }
    argv = [
        "--server",
        "http://127.0.0.1:8000/",
        "--provider-key",
        "pk_flag",
        "--heartbeat-interval",
        "2.5",
        "--state-dir",
        str(tmp_path),
        "--provider-instance-id",
        "i-flag",
    ]

    # when the configuration is loaded
    config = load_config(argv, env)

    # then flags win, env fills the rest, and the provider key serves as registration token
    assert config.server_url == "http://127.0.0.1:8000"
    assert config.registration_token == "pk_flag"
    assert config.heartbeat_interval == 2.5
    assert config.network_mode == "host"
    assert config.provider_instance_id == "i-flag"
    assert config.docker_host == "unix:///run/env.sock"
    assert config.state_dir == tmp_path
    assert config.runtime == "docker"


def test_defaults_and_bootstrap_token() -> None:
    config = load_config([], {"GPU_AGENT_BOOTSTRAP_TOKEN": "boot_1", "HOME": "/home/x"})
    assert config.registration_token == "boot_1"
    assert config.heartbeat_interval == 10.0
    assert config.network_mode == "bridge"
    assert config.state_dir.name == ".gco-agent"
    assert config.command == "run"
    with pytest.raises(ConfigError, match="GPU_AGENT_SERVER_URL"):
        config.require_server()


def test_gpu_devices_flag_for_simulated_hosts():
    assert load_config([], {}).gpu_devices is True
    assert load_config(["--gpu-devices", "off"], {}).gpu_devices is False
    assert load_config([], {"GPU_AGENT_GPU_DEVICES": "OFF"}).gpu_devices is False
    with pytest.raises(ConfigError, match="GPU_AGENT_GPU_DEVICES"):
        load_config([], {"GPU_AGENT_GPU_DEVICES": "maybe"})
