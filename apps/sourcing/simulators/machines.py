"""Simulated machines: an instance that boots over time (SimInstance), the fake `nvidia-smi` its
startup script finds on PATH, and how a killed script's process group is awaited. No Django
here."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.sourcing.adapters.gpu_names import BY_CANONICAL
from apps.sourcing.simulators.containers import SimWorkload

# --- simulated machines ----------------------------------------------------------------------


@dataclass
class SimInstance:
    id: str
    label: str
    gpu_model: str
    gpu_count: int
    price_per_hour: float  # dollars, whole instance, as the wire carries it
    created_at: float
    boot_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    startup_script: str = ""
    region: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    terminated_at: float | None = None
    running_since: float | None = None
    process: subprocess.Popen[bytes] | None = None
    sandbox: str = ""
    workload: SimWorkload | None = None  # container clouds: what the container runs
    preempted: str = ""  # "outbid" or "host_lost": the cloud took it back

    def phase(self, now: float) -> str:
        """creating → booting → running (→ terminated)."""
        if self.terminated:
            return "terminated"
        age = now - self.created_at
        if self.running_since is not None or age >= self.boot_seconds:
            return "running"
        return "creating" if age < self.boot_seconds / 2 else "booting"


def fake_nvidia_smi(bin_dir: Path, gpu_model: str, gpu_count: int) -> None:
    """An `nvidia-smi` that answers the agent's CSV query with `gpu_count` GPUs of
    `gpu_model`, in the format of the real captures (shared/fixtures/gpu)."""
    row = BY_CANONICAL.get(gpu_model)
    name = row.driver if row and row.driver else f"NVIDIA {gpu_model}"
    memory = (row.vram_gb if row else 24) * 1024 - 400
    lines = [
        f"{i}, GPU-{uuid.uuid4()}, {name}, 00000000:{i + 6:02X}:00.0, 580.159.04, {memory}, 0, "
        f"{memory}, 0, 0, 35, 60.00, 700.00, 405, 1980, 9.0, Enabled, Disabled"
        for i in range(gpu_count)
    ]
    (bin_dir / "gpus.csv").write_text("\n".join(lines) + "\n")
    (bin_dir / "banner.txt").write_text(
        "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0 |\n"
    )
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n  --query-gpu=*) cat "{bin_dir}/gpus.csv" ;;\n'
        f'  -q) exit 9 ;;\n  *) cat "{bin_dir}/banner.txt" ;;\nesac\n'
    )
    script.chmod(0o755)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in the group: an orphaned zombie whose
    new parent never reaps it still answers `killpg(pgid, 0)`."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
