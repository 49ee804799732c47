"""One normalised GPU table (fact sheet §5): our canonical name, VRAM per GPU, and each
provider's spelling. Adapters map both ways through it; simulators use the same rows to name
their machines, so a name the table does not know never leaves a provider unmapped silently.

Vast's A100s carry the form factor but not the memory size: the split into 40 GB and 80 GB is
made on `gpu_ram` (MB). RunPod's ids are exact strings from its catalogue. Lambda's instance
types are parsed from their `description`, not their name."""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuRow:
    canonical: str
    vram_gb: int
    vast: tuple[str, ...] = ()
    runpod: tuple[str, ...] = ()
    lambda_gpu: tuple[str, ...] = ()  # Lambda's `gpu_description` model part, e.g. "H100"
    driver: str = ""  # what nvidia-smi reports on such a machine (for simulated hosts)


GPU_TABLE: tuple[GpuRow, ...] = (
    GpuRow(
        "RTX 3090", 24, ("RTX 3090",), ("NVIDIA GeForce RTX 3090",), (), "NVIDIA GeForce RTX 3090"
    ),
    GpuRow(
        "RTX 4090", 24, ("RTX 4090",), ("NVIDIA GeForce RTX 4090",), (), "NVIDIA GeForce RTX 4090"
    ),
    GpuRow(
        "RTX 5090", 32, ("RTX 5090",), ("NVIDIA GeForce RTX 5090",), (), "NVIDIA GeForce RTX 5090"
    ),
    GpuRow("RTX A4000", 16, ("RTX A4000",), ("NVIDIA RTX A4000",), (), "NVIDIA RTX A4000"),
    GpuRow("RTX A5000", 24, ("RTX A5000",), ("NVIDIA RTX A5000",), (), "NVIDIA RTX A5000"),
    GpuRow("RTX A6000", 48, ("RTX A6000",), ("NVIDIA RTX A6000",), ("A6000",), "NVIDIA RTX A6000"),
    GpuRow(
        "RTX 6000 Ada",
        48,
        ("RTX 6000Ada",),
        ("NVIDIA RTX 6000 Ada Generation",),
        (),
        "NVIDIA RTX 6000 Ada Generation",
    ),
    GpuRow("A10", 24, ("A10",), (), ("A10",), "NVIDIA A10"),
    GpuRow("A40", 48, ("A40",), ("NVIDIA A40",), (), "NVIDIA A40"),
    GpuRow("L4", 24, ("L4",), ("NVIDIA L4",), (), "NVIDIA L4"),
    GpuRow("L40S", 48, ("L40S",), ("NVIDIA L40S",), (), "NVIDIA L40S"),
    GpuRow("A100 40GB", 40, ("A100 PCIE", "A100 SXM4"), (), ("A100",), "NVIDIA A100-SXM4-40GB"),
    GpuRow(
        "A100 80GB PCIe",
        80,
        ("A100 PCIE", "A100X"),
        ("NVIDIA A100 80GB PCIe",),
        (),
        "NVIDIA A100 80GB PCIe",
    ),
    GpuRow(
        "A100 80GB SXM",
        80,
        ("A100 SXM4",),
        ("NVIDIA A100-SXM4-80GB",),
        ("A100 SXM4 80GB",),
        "NVIDIA A100-SXM4-80GB",
    ),
    GpuRow(
        "H100 PCIe", 80, ("H100 PCIE",), ("NVIDIA H100 PCIe",), ("H100 PCIe",), "NVIDIA H100 PCIe"
    ),
    GpuRow(
        "H100 SXM",
        80,
        ("H100 SXM",),
        ("NVIDIA H100 80GB HBM3",),
        ("H100 SXM5",),
        "NVIDIA H100 80GB HBM3",
    ),
    GpuRow("H100 NVL", 94, ("H100 NVL",), ("NVIDIA H100 NVL",), (), "NVIDIA H100 NVL"),
    GpuRow(
        "H200", 141, ("H200", "H200 NVL"), ("NVIDIA H200", "NVIDIA H200 NVL"), (), "NVIDIA H200"
    ),
    GpuRow("B200", 180, ("B200",), ("NVIDIA B200",), ("B200 SXM6",), "NVIDIA B200"),
    GpuRow(
        "V100",
        16,
        ("Tesla V100",),
        ("Tesla V100-SXM2-16GB", "Tesla V100-PCIE-16GB", "Tesla V100-FHHL-16GB"),
        ("V100",),
        "Tesla V100-SXM2-16GB",
    ),
    GpuRow("T4", 16, ("Tesla T4",), ("Tesla T4",), (), "Tesla T4"),
)

BY_CANONICAL: dict[str, GpuRow] = {row.canonical: row for row in GPU_TABLE}
_BY_RUNPOD: dict[str, GpuRow] = {rid: row for row in GPU_TABLE for rid in row.runpod}


def vram_gb(canonical: str) -> int:
    row = BY_CANONICAL.get(canonical)
    return row.vram_gb if row else 0


def vast_names(canonical: str) -> tuple[str, ...]:
    row = BY_CANONICAL.get(canonical)
    return row.vast if row else ()


def from_vast(gpu_name: str, gpu_ram_mb: int | float | None) -> str | None:
    """Vast `gpu_name` (+ `gpu_ram` in MB, which splits the A100s) → canonical, or None."""
    name = gpu_name.strip().replace("_", " ")
    matches = [row for row in GPU_TABLE if name in row.vast]
    if not matches:
        return None
    if len(matches) == 1:
        return matches[0].canonical
    ram_gb = (gpu_ram_mb or 0) / 1000
    # Several rows share the spelling (A100 PCIE/SXM4): the closest VRAM wins.
    return min(matches, key=lambda row: abs(row.vram_gb - ram_gb)).canonical


def runpod_ids(canonical: str) -> tuple[str, ...]:
    row = BY_CANONICAL.get(canonical)
    return row.runpod if row else ()


def from_runpod(gpu_type_id: str) -> str | None:
    row = _BY_RUNPOD.get(gpu_type_id)
    return row.canonical if row else None


_LAMBDA_DESCRIPTION = re.compile(
    r"^\s*(?P<count>\d+)x\s+(?:Tesla\s+)?(?P<name>[A-Za-z0-9 ]+?)\s*"
    r"\((?P<mem>\d+)\s*GB(?P<rest>[^)]*)\)"
)


def from_lambda(description: str) -> tuple[str, int, int] | None:
    """Lambda `instance_type.description` ("8x H100 (80 GB SXM5)") → (canonical, count, VRAM GB),
    or None for a type we do not sell (CPU-only, unknown cards)."""
    match = _LAMBDA_DESCRIPTION.match(description)
    if not match:
        return None
    count, model, mem = int(match["count"]), match["name"].strip(), int(match["mem"])
    variant = match["rest"].strip()
    candidates = [f"{model} {variant}".strip(), model]
    if model == "A100" and mem == 80:
        candidates.insert(0, f"A100 {variant} 80GB".replace("  ", " ").strip())
    for candidate in candidates:
        for row in GPU_TABLE:
            if candidate in row.lambda_gpu and (model != "A100" or abs(row.vram_gb - mem) < 5):
                return row.canonical, count, mem
    return None


def lambda_description(canonical: str, count: int) -> str:
    """The `description` Lambda would show for `count` GPUs of `canonical` (simulators)."""
    row = BY_CANONICAL[canonical]
    model = row.lambda_gpu[0]
    if model == "A100 SXM4 80GB":
        return f"{count}x A100 (80 GB SXM4)"
    parts = model.split(" ", 1)
    variant = f" {parts[1]}" if len(parts) > 1 else ""
    return f"{count}x {parts[0]} ({row.vram_gb} GB{variant})"
