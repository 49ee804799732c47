"""Host facts (CPU, RAM, disk, OS, kernel, address) and load telemetry. Standard library only."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.log import log

logger = logging.getLogger("agent.system")

GIB = 1024**3


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def parse_cpu_model(cpuinfo: str) -> str | None:
    """The ``model name`` (x86) or ``Model``/``Hardware`` (Arm) line of ``/proc/cpuinfo``."""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return None


def parse_meminfo(meminfo: str) -> dict[str, int]:
    """``/proc/meminfo`` as {field: kB}."""
    values: dict[str, int] = {}
    for line in meminfo.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts and parts[0].isdigit():
            values[name.strip()] = int(parts[0])
    return values


def parse_os_release(text: str) -> str | None:
    """``PRETTY_NAME`` of ``/etc/os-release``."""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip().strip("\"'") or None
    return None


def parse_proc_stat(text: str) -> tuple[int, int] | None:
    """(busy, total) jiffies from the aggregate ``cpu`` line of ``/proc/stat``."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            numbers = [int(x) for x in fields[1:9] if x.isdigit()]
            if len(numbers) < 4:
                return None
            idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)  # idle + iowait
            total = sum(numbers)  # user … steal; guest time is already inside user
            return total - idle, total
    return None


def cpu_percent_between(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy = after[0] - before[0]
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    return round(max(0.0, min(100.0, 100.0 * busy / total)), 1)


def _floor_1(value: float) -> float:
    """Floor to one decimal (251.97 → 251.9), so a reported free size is never overstated."""
    return int(value * 10) / 10


def reachable_address(server_url: str | None) -> str | None:
    """The source address this host uses toward the server.

    A UDP socket ``connect`` only selects a route; no packet is sent.
    """
    if not server_url:
        return None
    parts = urlsplit(server_url)
    host = parts.hostname
    if not host:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        log(logger, logging.WARNING, "system.address_unresolved", host=host, error=str(exc))
        return None
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.connect(sockaddr)
                return str(sock.getsockname()[0])
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class DiskUsage:
    total_gb: float
    free_gb: float


def disk_usage(path: str = "/") -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(total_gb=_floor_1(usage.total / GIB), free_gb=_floor_1(usage.free / GIB))


class SystemProbe:
    """Reads host facts; keeps the previous ``/proc/stat`` sample for CPU percentages."""

    def __init__(self, disk_path: str = "/") -> None:
        self.disk_path = disk_path
        self._last_stat: tuple[int, int] | None = None

    def cpu_percent(self) -> float:
        """CPU busy % since the previous call (since boot on the first call)."""
        sample = parse_proc_stat(_read("/proc/stat"))
        if sample is None:
            return 0.0
        before = self._last_stat or (0, 0)
        self._last_stat = sample
        return cpu_percent_between(before, sample)

    def ram_mb(self) -> tuple[int, int]:
        """(total, used) MiB; used is total minus MemAvailable."""
        info = parse_meminfo(_read("/proc/meminfo"))
        total_kb = info.get("MemTotal", 0)
        available_kb = info.get("MemAvailable", info.get("MemFree", 0))
        return round(total_kb / 1024), round((total_kb - available_kb) / 1024)

    def info(self, *, server_url: str | None, docker_version: str | None) -> dict[str, Any]:
        """The ``system`` object of the register request."""
        disk = disk_usage(self.disk_path)
        kernel = platform.release()
        return {
            "cpu_model": parse_cpu_model(_read("/proc/cpuinfo"))
            or platform.processor()
            or platform.machine(),
            "cpu_cores": os.cpu_count() or 1,
            "ram_total_mb": self.ram_mb()[0],
            "disk_total_gb": disk.total_gb,
            "disk_free_gb": disk.free_gb,
            "os": parse_os_release(_read("/etc/os-release")) or platform.system(),
            "kernel": kernel,
            "docker_version": docker_version,
            "address": reachable_address(server_url),
        }

    def telemetry(self) -> dict[str, Any]:
        """The ``system`` object of the heartbeat request."""
        load = 0.0
        with contextlib.suppress(OSError):
            load = round(os.getloadavg()[0], 2)
        return {
            "cpu_percent": self.cpu_percent(),
            "ram_used_mb": self.ram_mb()[1],
            "disk_free_gb": disk_usage(self.disk_path).free_gb,
            "load_avg": load,
        }
