"""The agent's metrics: off unless a port is given, served on 127.0.0.1 only, and moved by
the loop (a tick against an unreachable server counts as server_unavailable)."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import metrics
from agent.config import ConfigError, load_config
from tests.agent.conftest import SERVER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_port_is_opt_in_and_checked(tmp_path):
    base = ["--server", SERVER, "--state-dir", str(tmp_path)]
    assert load_config(base, env={}).metrics_port is None
    assert load_config(base, env={"GPU_AGENT_METRICS_PORT": "9464"}).metrics_port == 9464
    assert load_config([*base, "--metrics-port", "9465"], env={}).metrics_port == 9465
    for bad in ("80", "70000", "port"):
        with pytest.raises(ConfigError, match="GPU_AGENT_METRICS_PORT"):
            load_config(base, env={"GPU_AGENT_METRICS_PORT": bad})


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return 0.0


@pytest.mark.docker
def test_a_tick_shows_on_the_local_endpoint(agent):  # noqa: F811 - the fixture
    server = metrics.serve(free_port())
    try:
        assert server.server_address[0] == "127.0.0.1"  # never on a public interface
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        before = httpx.get(url).text
        agent.run_cycle()  # the server at SERVER does not answer
        after = httpx.get(url).text
    finally:
        server.shutdown()
        server.server_close()
    outcome = {"outcome": "server_unavailable"}
    assert (
        sample(after, "gco_agent_cycles_total", **outcome)
        - sample(before, "gco_agent_cycles_total", **outcome)
        == 1
    )
    assert (
        sample(after, "gco_agent_cycle_duration_seconds_count")
        - sample(before, "gco_agent_cycle_duration_seconds_count")
        == 1
    )
