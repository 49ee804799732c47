"""Our canonical GPU model names (what users ask for) and the mapping from the names NVIDIA's
driver reports. Upstream clouds' spellings map onto the same names in the sourcing adapters."""

import re
from dataclasses import dataclass

# What a pod without GPUs asks for: it runs on any online node, CPU-only nodes first.
CPU_MODEL = "CPU"


@dataclass(frozen=True)
class GpuModel:
    name: str
    vram_gb: int


CANONICAL: dict[str, GpuModel] = {
    m.name: m
    for m in (
        GpuModel("RTX 3090", 24),
        GpuModel("RTX 4090", 24),
        GpuModel("RTX 5090", 32),
        GpuModel("RTX A4000", 16),
        GpuModel("RTX A5000", 24),
        GpuModel("RTX A6000", 48),
        GpuModel("RTX 6000 Ada", 48),
        GpuModel("A10", 24),
        GpuModel("A40", 48),
        GpuModel("L4", 24),
        GpuModel("L40S", 48),
        GpuModel("A100 40GB", 40),
        GpuModel("A100 80GB PCIe", 80),
        GpuModel("A100 80GB SXM", 80),
        GpuModel("H100 PCIe", 80),
        GpuModel("H100 SXM", 80),
        GpuModel("H100 NVL", 94),
        GpuModel("H200", 141),
        GpuModel("B200", 180),
        GpuModel("V100", 16),
        GpuModel("T4", 16),
    )
}

# Driver names (nvidia-smi / NVML), checked in order; the first pattern that matches wins.
_DRIVER_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), name)
    for pattern, name in (
        (r"H100 80GB HBM3|H100 SXM", "H100 SXM"),
        (r"H100 NVL", "H100 NVL"),
        (r"H100 PCIe", "H100 PCIe"),
        (r"\bH200\b", "H200"),
        (r"\bB200\b", "B200"),
        (r"A100.*SXM4.*80GB|A100.*80GB.*SXM", "A100 80GB SXM"),
        (r"A100.*80GB", "A100 80GB PCIe"),
        (r"\bA100\b", "A100 40GB"),
        (r"RTX 6000 Ada", "RTX 6000 Ada"),
        (r"RTX A6000", "RTX A6000"),
        (r"RTX A5000", "RTX A5000"),
        (r"RTX A4000", "RTX A4000"),
        (r"RTX 5090", "RTX 5090"),
        (r"RTX 4090", "RTX 4090"),
        (r"RTX 3090", "RTX 3090"),
        (r"\bL40S\b", "L40S"),
        (r"\bL4\b", "L4"),
        (r"\bA40\b", "A40"),
        (r"\bA10\b", "A10"),
        (r"V100", "V100"),
        (r"\bT4\b", "T4"),
    )
)


def canonical_gpu_model(driver_name: str) -> str:
    """Canonical model for a driver-reported name; an unknown card keeps its own name without
    the vendor prefix, so it can still be listed and asked for."""
    for pattern, name in _DRIVER_PATTERNS:
        if pattern.search(driver_name):
            return name
    return re.sub(r"^(NVIDIA\s+)?(GeForce\s+)?", "", driver_name.strip()) or "unknown"
