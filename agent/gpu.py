"""GPU detection and telemetry: NVML first, then ``nvidia-smi`` CSV, then ``nvidia-smi -q -x``.

The parsers are pure functions over text or dicts, so the real captures in
``tests/fixtures/gpu/`` drive the tests. Detection never raises: no driver, a broken driver or
output that cannot be read all give an empty GPU list (a CPU-only host), and are logged.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET  # noqa: S405 - parses nvidia-smi's own output, not input from the network
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from agent.log import log

logger = logging.getLogger("agent.gpu")

MIB = 1024 * 1024
SMI_TIMEOUT_S = 10.0

QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "utilization.memory",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "clocks.sm",
    "clocks.max.sm",
    "compute_cap",
    "persistence_mode",
    "mig.mode.current",
)
QUERY_ARGS: tuple[str, ...] = (
    f"--query-gpu={','.join(QUERY_FIELDS)}",
    "--format=csv,noheader,nounits",
)

_NOT_A_VALUE = {"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown", "[unknown]"}
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
_CUDA_IN_BANNER = re.compile(r"CUDA Version:\s*(\d+\.\d+)")


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as the agent reports it. Memory in MiB, power in watts, temperature in °C."""

    index: int
    uuid: str
    name: str
    memory_total_mb: int
    memory_used_mb: int | None = None
    utilization_pct: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    mig_mode: bool = False
    pci_bus_id: str | None = None

    def registration(self) -> dict[str, Any]:
        """The ``gpus[]`` item of the register request."""
        return {
            "index": self.index,
            "uuid": self.uuid,
            "name": self.name,
            "memory_total_mb": self.memory_total_mb,
            "mig_mode": self.mig_mode,
        }

    def telemetry(self) -> dict[str, Any]:
        """The ``gpus[]`` item of the heartbeat request."""
        return {
            "index": self.index,
            "uuid": self.uuid,
            "utilization_pct": self.utilization_pct,
            "memory_used_mb": self.memory_used_mb,
            "memory_total_mb": self.memory_total_mb,
            "temperature_c": self.temperature_c,
            "power_w": self.power_w,
        }


@dataclass(frozen=True)
class GpuReport:
    """What one detection found; ``source`` says which path produced it."""

    source: str = "none"
    driver_version: str | None = None
    cuda_version: str | None = None
    gpus: list[GpuInfo] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- small value parsers ---------------------------------------------------------------------


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _NOT_A_VALUE else text


def _float(value: object) -> float | None:
    """``"134.98 W"``, ``"81559"``, ``"0 %"`` → number; ``"[N/A]"`` → None."""
    text = _clean(value)
    if text is None:
        return None
    match = _NUMBER.match(text)
    return float(match.group(1)) if match else None


def _int(value: object) -> int | None:
    number = _float(value)
    return None if number is None else int(number)


def _enabled(value: object) -> bool:
    text = _clean(value)
    return text is not None and text.lower() in ("enabled", "1", "true", "yes")


def cuda_version_from_int(value: object) -> str | None:
    """NVML's ``cuda_driver`` integer to text: 13000 → ``"13.0"``, 12040 → ``"12.4"``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def _valid_uuid(value: str | None) -> TypeGuard[str]:
    return value is not None and value.startswith(("GPU-", "MIG-"))


# --- nvidia-smi --query-gpu CSV --------------------------------------------------------------


def parse_query_csv(text: str, fields: Sequence[str] = QUERY_FIELDS) -> GpuReport:
    """Parse ``nvidia-smi --query-gpu=… --format=csv[,noheader][,nounits]`` output.

    ``fields`` names the queried columns in order; when the text starts with a header row
    (``--format=csv`` without ``noheader``) the header names them instead and unit suffixes
    like ``" MiB"`` are stripped. Rows that do not read as a GPU are skipped.
    """
    rows = [row for row in csv.reader(io.StringIO(text), skipinitialspace=True) if row]
    columns = list(fields)
    if rows and rows[0] and rows[0][0].strip().lower() == "index":
        columns = [re.sub(r"\s*\[.*\]$", "", cell.strip()) for cell in rows[0]]
        rows = rows[1:]

    gpus: list[GpuInfo] = []
    driver: str | None = None
    for row in rows:
        if len(row) != len(columns):
            continue
        values = dict(zip(columns, (cell.strip() for cell in row), strict=True))
        index = _int(values.get("index"))
        uuid = _clean(values.get("uuid"))
        name = _clean(values.get("name"))
        total = _int(values.get("memory.total"))
        if index is None or not _valid_uuid(uuid) or not name or total is None:
            continue
        driver = driver or _clean(values.get("driver_version"))
        gpus.append(
            GpuInfo(
                index=index,
                uuid=uuid,
                name=name,
                memory_total_mb=total,
                memory_used_mb=_int(values.get("memory.used")),
                utilization_pct=_int(values.get("utilization.gpu")),
                temperature_c=_int(values.get("temperature.gpu")),
                power_w=_float(values.get("power.draw")),
                power_limit_w=_float(values.get("power.limit")),
                mig_mode=_enabled(values.get("mig.mode.current")),
                pci_bus_id=_clean(values.get("pci.bus_id")),
            )
        )
    if not gpus:
        return GpuReport()
    return GpuReport(source="nvidia-smi", driver_version=driver, gpus=gpus)


def parse_cuda_from_banner(text: str) -> str | None:
    """The ``CUDA Version: 13.0`` of plain ``nvidia-smi`` output."""
    match = _CUDA_IN_BANNER.search(text)
    return match.group(1) if match else None


# --- nvidia-smi -q -x ------------------------------------------------------------------------


def _find_text(node: ET.Element, *paths: str) -> str | None:
    for path in paths:
        found = node.find(path)
        if found is not None and found.text is not None:
            value = _clean(found.text)
            if value is not None:
                return value
    return None


def parse_smi_xml(text: str) -> GpuReport:
    """Parse ``nvidia-smi -q -x``. GPUs are listed in index order, so the position is the index."""
    try:
        root = ET.fromstring(text)  # noqa: S314 - nvidia-smi's own output; no entity expansion
    except ET.ParseError:
        return GpuReport()
    if root.tag != "nvidia_smi_log":
        return GpuReport()

    gpus: list[GpuInfo] = []
    for position, node in enumerate(root.findall("gpu")):
        uuid = _find_text(node, "uuid")
        name = _find_text(node, "product_name")
        total = _int(_find_text(node, "fb_memory_usage/total"))
        if not _valid_uuid(uuid) or not name or total is None:
            continue
        gpus.append(
            GpuInfo(
                index=position,
                uuid=uuid,
                name=name,
                memory_total_mb=total,
                memory_used_mb=_int(_find_text(node, "fb_memory_usage/used")),
                utilization_pct=_int(_find_text(node, "utilization/gpu_util")),
                temperature_c=_int(_find_text(node, "temperature/gpu_temp")),
                # Older drivers have power_readings/power_draw; newer ones split it into average
                # (what --query-gpu power.draw reports on Ampere and later) and instant.
                power_w=_float(
                    _find_text(
                        node,
                        "gpu_power_readings/power_draw",
                        "gpu_power_readings/average_power_draw",
                        "gpu_power_readings/instant_power_draw",
                        "power_readings/power_draw",
                    )
                ),
                power_limit_w=_float(
                    _find_text(
                        node,
                        "gpu_power_readings/current_power_limit",
                        "power_readings/power_limit",
                    )
                ),
                mig_mode=_enabled(_find_text(node, "mig_mode/current_mig")),
                pci_bus_id=_find_text(node, "pci/pci_bus_id") or node.get("id"),
            )
        )
    if not gpus:
        return GpuReport()
    return GpuReport(
        source="nvidia-smi-xml",
        driver_version=_find_text(root, "driver_version"),
        cuda_version=_find_text(root, "cuda_version"),
        gpus=gpus,
    )


# --- NVML ------------------------------------------------------------------------------------


def from_nvml_snapshot(snapshot: Mapping[str, Any]) -> GpuReport:
    """Build a report from the dict shape of ``pynvml.json`` (what ``nvml_snapshot`` returns).

    Memory comes in bytes and is floored to MiB; power comes in milliwatts. When the memory
    dict has ``reserved`` (NVML's v2 memory info), ``used`` already excludes the driver's
    reservation, as nvidia-smi shows it; with v1 info ``used`` includes it.
    """
    try:
        return _from_nvml_snapshot(snapshot)
    except (AttributeError, TypeError, ValueError) as exc:
        log(logger, logging.WARNING, "gpu.nvml_snapshot_unreadable", error=str(exc))
        return GpuReport()


def _from_nvml_snapshot(snapshot: Mapping[str, Any]) -> GpuReport:
    gpus: list[GpuInfo] = []
    for item in snapshot.get("gpus") or []:
        if not isinstance(item, Mapping):
            continue
        index, uuid, name = item.get("index"), _clean(item.get("uuid")), _clean(item.get("name"))
        memory = _mapping(item.get("memory"))
        total = memory.get("total")
        if not isinstance(index, int) or not _valid_uuid(uuid) or not name:
            continue
        if not isinstance(total, int):
            continue
        used = memory.get("used")
        util = _mapping(item.get("util"))
        power_mw, limit_mw = item.get("power_mw"), item.get("power_limit_mw")
        mig = item.get("mig_mode")
        current_mig = mig[0] if isinstance(mig, list | tuple) and mig else mig
        gpus.append(
            GpuInfo(
                index=index,
                uuid=uuid,
                name=name,
                memory_total_mb=total // MIB,
                memory_used_mb=used // MIB if isinstance(used, int) else None,
                utilization_pct=_int(util.get("gpu")),
                temperature_c=_int(item.get("temp_c")),
                power_w=round(power_mw / 1000, 2) if isinstance(power_mw, int) else None,
                power_limit_w=round(limit_mw / 1000, 2) if isinstance(limit_mw, int) else None,
                mig_mode=current_mig == 1,
                pci_bus_id=_clean(item.get("pci_bus_id")),
            )
        )
    if not gpus:
        return GpuReport()
    return GpuReport(
        source="nvml",
        driver_version=_clean(snapshot.get("driver")),
        cuda_version=cuda_version_from_int(snapshot.get("cuda_driver")),
        gpus=gpus,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_snapshot(nvml: Any) -> dict[str, Any]:
    """Read every GPU through an initialised ``pynvml`` module into the ``pynvml.json`` shape.

    A field the device does not support is ``None``; a device that cannot be opened is left out.
    """

    def safe(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except nvml.NVMLError:
            return None

    gpus: list[dict[str, Any]] = []
    for index in range(int(nvml.nvmlDeviceGetCount())):
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as exc:
            log(logger, logging.WARNING, "gpu.nvml_device_unreadable", index=index, error=str(exc))
            continue
        memory: dict[str, int] | None = None
        info = safe(nvml.nvmlDeviceGetMemoryInfo, handle, version=nvml.nvmlMemory_v2)
        if info is not None:
            memory = {
                "total": info.total,
                "free": info.free,
                "used": info.used,
                "reserved": info.reserved,
            }
        else:
            info = safe(nvml.nvmlDeviceGetMemoryInfo, handle)
            if info is not None:
                memory = {"total": info.total, "free": info.free, "used": info.used}
        rates = safe(nvml.nvmlDeviceGetUtilizationRates, handle)
        name = safe(nvml.nvmlDeviceGetName, handle)
        uuid = safe(nvml.nvmlDeviceGetUUID, handle)
        pci = safe(nvml.nvmlDeviceGetPciInfo, handle)
        mig = safe(nvml.nvmlDeviceGetMigMode, handle)
        gpus.append(
            {
                "index": index,
                "name": _text(name) if name is not None else None,
                "uuid": _text(uuid) if uuid is not None else None,
                "memory": memory,
                "util": {"gpu": rates.gpu, "memory": rates.memory} if rates is not None else {},
                "temp_c": safe(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
                "power_mw": safe(nvml.nvmlDeviceGetPowerUsage, handle),
                "power_limit_mw": safe(nvml.nvmlDeviceGetEnforcedPowerLimit, handle),
                "pci_bus_id": _text(pci.busId) if pci is not None else None,
                "mig_mode": list(mig) if mig is not None else None,
            }
        )
    driver = safe(nvml.nvmlSystemGetDriverVersion)
    return {
        "driver": _text(driver) if driver is not None else None,
        "cuda_driver": safe(nvml.nvmlSystemGetCudaDriverVersion),
        "gpus": gpus,
    }


# --- the collector ---------------------------------------------------------------------------


class GpuCollector:
    """Detects GPUs once per call through the first path that works; never raises.

    ``backend`` is ``auto`` (NVML, then nvidia-smi CSV, then nvidia-smi XML), ``nvml``,
    ``nvidia-smi`` (CSV then XML) or ``none``. NVML stays initialised for the collector's life.
    """

    def __init__(self, backend: str = "auto") -> None:
        if backend not in ("auto", "nvml", "nvidia-smi", "none"):
            raise ValueError(f"unknown GPU backend {backend!r}")
        self.backend = backend
        self._nvml: Any = None
        self._nvml_failed = False
        self._cuda_from_banner: str | None = None
        self._last_source: str | None = None

    def report(self) -> GpuReport:
        try:
            report = self._detect()
        except Exception as exc:  # detection must never take the agent down
            log(logger, logging.ERROR, "gpu.detection_error", error=repr(exc))
            report = GpuReport()
        if report.source != self._last_source:
            log(
                logger,
                logging.INFO,
                "gpu.detected",
                source=report.source,
                count=len(report.gpus),
                driver_version=report.driver_version,
                cuda_version=report.cuda_version,
            )
            self._last_source = report.source
        return report

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:  # noqa: BLE001 - shutting down; nothing to do about it
                log(logger, logging.DEBUG, "gpu.nvml_shutdown_failed", error=repr(exc))
            self._nvml = None

    def _detect(self) -> GpuReport:
        if self.backend in ("auto", "nvml"):
            report = self._from_nvml()
            if report.gpus or self.backend == "nvml":
                return report
        if self.backend in ("auto", "nvidia-smi"):
            return self._from_smi()
        return GpuReport()

    def _from_nvml(self) -> GpuReport:
        if self._nvml is None and not self._nvml_failed:
            try:
                import pynvml  # type: ignore[import-untyped, unused-ignore]

                pynvml.nvmlInit()
            except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError…
                self._nvml_failed = True
                log(logger, logging.INFO, "gpu.nvml_unavailable", error=str(exc) or repr(exc))
                return GpuReport()
            self._nvml = pynvml
        if self._nvml is None:
            return GpuReport()
        try:
            return from_nvml_snapshot(nvml_snapshot(self._nvml))
        except self._nvml.NVMLError as exc:
            log(logger, logging.WARNING, "gpu.nvml_failed", error=str(exc))
            return GpuReport()

    def _from_smi(self) -> GpuReport:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return GpuReport()
        output = _run(smi, *QUERY_ARGS)
        report = parse_query_csv(output) if output is not None else GpuReport()
        if report.gpus:
            if self._cuda_from_banner is None:
                banner = _run(smi)
                self._cuda_from_banner = parse_cuda_from_banner(banner or "")
            return GpuReport(
                source=report.source,
                driver_version=report.driver_version,
                cuda_version=self._cuda_from_banner,
                gpus=report.gpus,
            )
        xml = _run(smi, "-q", "-x")
        return parse_smi_xml(xml) if xml is not None else GpuReport()


def _run(*argv: str) -> str | None:
    """Run nvidia-smi; its stdout, or None (logged) when it fails, hangs or cannot start."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed arguments, executable resolved by which()
            argv,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log(logger, logging.WARNING, "gpu.nvidia_smi_failed", args=list(argv[1:]), error=str(exc))
        return None
    if done.returncode != 0:
        log(
            logger,
            logging.WARNING,
            "gpu.nvidia_smi_failed",
            args=list(argv[1:]),
            returncode=done.returncode,
            output=(done.stdout + done.stderr).strip()[:500],
        )
        return None
    return done.stdout


def detect_gpus(backend: str = "auto") -> GpuReport:
    """One-shot detection (the collector, then NVML shut down)."""
    collector = GpuCollector(backend)
    try:
        return collector.report()
    finally:
        collector.close()
