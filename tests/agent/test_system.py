"""Host facts, read from the real GPU hosts' captures and from this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.system import (
    SystemProbe,
    cpu_percent_between,
    parse_cpu_model,
    parse_meminfo,
    parse_os_release,
    parse_proc_stat,
    reachable_address,
)


def section(host_txt: str, name: str) -> str:
    """One ``### name`` section of a host.txt capture."""
    parts = host_txt.split(f"### {name}\n", 1)[1]
    return parts.split("\n###", 1)[0]


@pytest.mark.parametrize("card", ["h100", "h200"])
def test_parsers_read_the_gpu_hosts(gpu_fixtures: Path, card: str) -> None:
    host = (gpu_fixtures / card / "host.txt").read_text()

    assert parse_os_release(section(host, "os-release")) == "Ubuntu 24.04.3 LTS"
    assert parse_cpu_model(section(host, "cpuinfo model")) == "Intel(R) Xeon(R) Processor"
    meminfo = parse_meminfo(section(host, "meminfo"))
    assert meminfo["MemTotal"] == 131981020
    assert round(meminfo["MemTotal"] / 1024) == 128888  # the protocol example's ram_total_mb


def test_cpu_percent_from_proc_stat_deltas() -> None:
    before = parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    after = parse_proc_stat("cpu  150 0 150 850 50 0 0 0 0 0\n")
    assert before == (200, 1000)
    assert after == (300, 1200)
    assert cpu_percent_between(before, after) == 50.0  # 100 busy of 200 (iowait is idle)
    assert cpu_percent_between(after, after) == 0.0
    assert parse_proc_stat("garbage") is None


def test_reachable_address_toward_loopback() -> None:
    assert reachable_address("http://127.0.0.1:8000") == "127.0.0.1"
    assert reachable_address(None) is None
    assert reachable_address("http://name.invalid:8000") is None


def test_register_and_heartbeat_shapes_follow_the_protocol() -> None:
    probe = SystemProbe()

    info = probe.info(server_url="http://127.0.0.1:8000", docker_version="28.2.2")
    telemetry = probe.telemetry()

    assert set(info) == {
        "cpu_model",
        "cpu_cores",
        "ram_total_mb",
        "disk_total_gb",
        "disk_free_gb",
        "os",
        "kernel",
        "docker_version",
        "address",
    }
    assert info["cpu_cores"] >= 1
    assert info["ram_total_mb"] > 0
    assert 0 < info["disk_free_gb"] <= info["disk_total_gb"]
    assert info["address"] == "127.0.0.1"
    assert info["docker_version"] == "28.2.2"
    assert set(telemetry) == {"cpu_percent", "ram_used_mb", "disk_free_gb", "load_avg"}
    assert 0.0 <= telemetry["cpu_percent"] <= 100.0
    assert 0 < telemetry["ram_used_mb"] <= info["ram_total_mb"]
