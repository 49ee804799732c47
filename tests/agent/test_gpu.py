"""GPU detection over the real H100/H200 captures, and the no-driver / broken-driver cases."""

from __future__ import annotations

import ctypes.util
import json
import os
import stat
from pathlib import Path

import pytest

from agent.gpu import (
    GpuCollector,
    cuda_version_from_int,
    detect_gpus,
    from_nvml_snapshot,
    parse_cuda_from_banner,
    parse_query_csv,
    parse_smi_xml,
)

H100 = {
    "dir": "h100",
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-d32abdfd-27f3-113f-1220-daec48fd834c",
    "memory_total_mb": 81559,
}
H200 = {
    "dir": "h200",
    "name": "NVIDIA H200",
    "uuid": "GPU-87b41bd1-716d-d53d-4c34-5a6fae02f8f5",
    "memory_total_mb": 143771,
}
DRIVER = "580.159.04"
CUDA = "13.0"


def _read(root: Path, card: dict[str, object], file: str) -> str:
    return (root / str(card["dir"]) / file).read_text()


@pytest.mark.parametrize(
    ("card", "temperature_c", "power_w"),
    [(H100, 49, 134.98), (H200, 44, 132.02)],
    ids=["h100", "h200"],
)
def test_query_csv_capture(
    gpu_fixtures: Path, card: dict[str, object], temperature_c: int, power_w: float
) -> None:
    # given the --query-gpu capture of a real host
    text = _read(gpu_fixtures, card, "nvidia-smi-query.csv")

    # when it is parsed
    report = parse_query_csv(text)

    # then every field reads exactly
    assert report.source == "nvidia-smi"
    assert report.driver_version == DRIVER
    assert report.cuda_version is None  # the CSV has no CUDA version; the banner gives it
    assert parse_cuda_from_banner(_read(gpu_fixtures, card, "nvidia-smi.txt")) == CUDA
    [gpu] = report.gpus
    assert gpu.index == 0
    assert gpu.uuid == card["uuid"]
    assert gpu.name == card["name"]
    assert gpu.memory_total_mb == card["memory_total_mb"]
    assert gpu.memory_used_mb == 0
    assert gpu.utilization_pct == 0
    assert gpu.temperature_c == temperature_c
    assert gpu.power_w == power_w
    assert gpu.power_limit_w == 700.0
    assert gpu.mig_mode is False
    assert gpu.pci_bus_id == "00000000:00:06.0"


@pytest.mark.parametrize(
    ("card", "power_w"), [(H100, 133.69), (H200, 132.03)], ids=["h100", "h200"]
)
def test_query_csv_with_header_and_units(
    gpu_fixtures: Path, card: dict[str, object], power_w: float
) -> None:
    # given `--format=csv` output: a header row and units on every value
    text = _read(gpu_fixtures, card, "nvidia-smi-query-header.csv")

    # when it is parsed
    report = parse_query_csv(text)

    # then the header names the columns and the units are stripped
    [gpu] = report.gpus
    assert (gpu.uuid, gpu.name) == (card["uuid"], card["name"])
    assert gpu.memory_total_mb == card["memory_total_mb"]
    assert gpu.memory_used_mb == 0
    assert gpu.power_w == power_w
    assert report.driver_version is None


@pytest.mark.parametrize(
    ("card", "temperature_c", "power_w"),
    [(H100, 50, 138.35), (H200, 44, 132.01)],
    ids=["h100", "h200"],
)
def test_smi_xml_capture(
    gpu_fixtures: Path, card: dict[str, object], temperature_c: int, power_w: float
) -> None:
    # given the `nvidia-smi -q -x` capture (taken a moment apart from the CSV: the H100 read
    # 50 C there and 49 C in the CSV)
    text = _read(gpu_fixtures, card, "nvidia-smi-q.xml")

    # when it is parsed
    report = parse_smi_xml(text)

    # then driver, CUDA and the GPU read exactly; power is the average draw
    assert report.source == "nvidia-smi-xml"
    assert report.driver_version == DRIVER
    assert report.cuda_version == CUDA
    [gpu] = report.gpus
    assert gpu.index == 0
    assert gpu.uuid == card["uuid"]
    assert gpu.name == card["name"]
    assert gpu.memory_total_mb == card["memory_total_mb"]
    assert gpu.memory_used_mb == 0
    assert gpu.utilization_pct == 0
    assert gpu.temperature_c == temperature_c
    assert gpu.power_w == power_w
    assert gpu.power_limit_w == 700.0
    assert gpu.mig_mode is False


@pytest.mark.parametrize(
    ("card", "temperature_c", "power_w", "memory_used_mb"),
    [(H100, 49, 120.81, 480), (H200, 44, 132.05, 615)],
    ids=["h100", "h200"],
)
def test_nvml_snapshot_capture(
    gpu_fixtures: Path,
    card: dict[str, object],
    temperature_c: int,
    power_w: float,
    memory_used_mb: int,
) -> None:
    # given what nvidia-ml-py read on the host (bytes, milliwatts, cuda_driver 13000)
    snapshot = json.loads(_read(gpu_fixtures, card, "pynvml.json"))

    # when it is converted
    report = from_nvml_snapshot(snapshot)

    # then bytes are floored to MiB (85520809984 B → 81559 MiB) and 13000 reads "13.0"
    assert report.source == "nvml"
    assert report.driver_version == DRIVER
    assert report.cuda_version == CUDA
    [gpu] = report.gpus
    assert gpu.uuid == card["uuid"]
    assert gpu.name == card["name"]
    assert gpu.memory_total_mb == card["memory_total_mb"]
    # NVML's v1 memory info counts the driver's reservation as used; nvidia-smi does not.
    assert gpu.memory_used_mb == memory_used_mb
    assert gpu.utilization_pct == 0
    assert gpu.temperature_c == temperature_c
    assert gpu.power_w == power_w
    assert gpu.mig_mode is False


def test_nvml_snapshot_with_reserved_memory_matches_nvidia_smi() -> None:
    # given NVML v2 memory info, where "used" excludes the reserved part
    snapshot = {
        "driver": DRIVER,
        "cuda_driver": 12040,
        "gpus": [
            {
                "index": 0,
                "name": "NVIDIA H100 80GB HBM3",
                "uuid": H100["uuid"],
                "memory": {
                    "total": 85520809984,
                    "reserved": 503316480,
                    "free": 85017493504,
                    "used": 0,
                },
                "mig_mode": [1, 1],
            }
        ],
    }

    # when it is converted
    report = from_nvml_snapshot(snapshot)

    # then used is 0 MiB as nvidia-smi shows, MIG reads enabled and 12040 reads 12.4
    assert report.gpus[0].memory_used_mb == 0
    assert report.gpus[0].mig_mode is True
    assert report.cuda_version == "12.4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(13000, "13.0"), (12040, "12.4"), (11080, "11.8"), (0, None), (None, None)],
)
def test_cuda_version_from_int(value: object, expected: str | None) -> None:
    assert cuda_version_from_int(value) == expected


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        "foo, bar, baz\n\x00\x01,,,",
        "0, not-a-uuid, Some GPU, 00000000:00:06.0, 580, lots, 0, 0, 0, 0, 49, 1, 1, 1, 1, 9.0, "
        "Enabled, Disabled",
    ],
)
def test_garbage_csv_reads_as_no_gpu(garbage: str) -> None:
    assert parse_query_csv(garbage).gpus == []


@pytest.mark.parametrize("garbage", ["", "<html>nope</html>", "<nvidia_smi_log><gpu>", "{}"])
def test_garbage_xml_reads_as_no_gpu(garbage: str) -> None:
    assert parse_smi_xml(garbage).gpus == []


@pytest.mark.parametrize(
    "garbage", [{}, {"gpus": "x"}, {"gpus": [1, None, {"index": "a"}]}, {"gpus": [{"memory": 5}]}]
)
def test_garbage_nvml_snapshot_reads_as_no_gpu(garbage: dict[str, object]) -> None:
    assert from_nvml_snapshot(garbage).gpus == []


# --- detection through the real subprocess path ---------------------------------------------


def _nvml_present() -> bool:
    return (
        ctypes.util.find_library("nvidia-ml") is not None
        or Path("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1").exists()
    )


def _fake_smi(folder: Path, script: str) -> None:
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_no_driver_is_a_cpu_only_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given no NVML library and no nvidia-smi on PATH
    if _nvml_present():
        pytest.skip("this host has NVML; the no-driver case cannot be shown here")
    monkeypatch.setenv("PATH", str(tmp_path))

    # when GPUs are detected
    report = detect_gpus()

    # then the host is CPU-only, without an exception
    assert report.gpus == []
    assert report.source == "none"
    assert (report.driver_version, report.cuda_version) == (None, None)


def test_broken_driver_is_a_cpu_only_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an nvidia-smi that cannot talk to the driver (exit 9, as the real one does)
    _fake_smi(
        tmp_path,
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        'Make sure that the latest NVIDIA driver is installed and running."\nexit 9\n',
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")

    # when GPUs are detected through nvidia-smi
    report = GpuCollector("nvidia-smi").report()

    # then the host is CPU-only, without an exception
    assert report.gpus == []


def test_garbage_from_nvidia_smi_is_a_cpu_only_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an nvidia-smi that exits 0 but prints nonsense for every query
    _fake_smi(tmp_path, 'echo "Segmentation fault ??? ,,, <xml"\nexit 0\n')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")

    # when GPUs are detected
    report = GpuCollector("nvidia-smi").report()

    # then nothing is found and nothing is raised
    assert report.gpus == []


def test_nvidia_smi_csv_path_end_to_end(
    gpu_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an nvidia-smi that replays the H200 host's captures
    h200 = gpu_fixtures / "h200"
    _fake_smi(
        tmp_path,
        f'case "$1" in\n'
        f'  --query-gpu=*) cat "{h200}/nvidia-smi-query.csv" ;;\n'
        f'  -q) cat "{h200}/nvidia-smi-q.xml" ;;\n'
        f'  *) cat "{h200}/nvidia-smi.txt" ;;\n'
        f"esac\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")

    # when GPUs are detected through nvidia-smi
    report = GpuCollector("nvidia-smi").report()

    # then the CSV gives the GPU and the banner the CUDA version
    assert report.source == "nvidia-smi"
    assert (report.driver_version, report.cuda_version) == (DRIVER, CUDA)
    assert [(g.uuid, g.memory_total_mb) for g in report.gpus] == [(H200["uuid"], 143771)]


def test_nvidia_smi_xml_fallback_end_to_end(
    gpu_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an nvidia-smi that refuses the --query-gpu fields but answers -q -x
    h100 = gpu_fixtures / "h100"
    _fake_smi(
        tmp_path,
        f'case "$1" in\n'
        f'  --query-gpu=*) echo "Field \\"mig.mode.current\\" is not a valid field"; exit 2 ;;\n'
        f'  -q) cat "{h100}/nvidia-smi-q.xml" ;;\n'
        f"  *) exit 1 ;;\n"
        f"esac\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}/usr/bin:/bin")

    # when GPUs are detected
    report = GpuCollector("nvidia-smi").report()

    # then the XML answers
    assert report.source == "nvidia-smi-xml"
    assert (report.driver_version, report.cuda_version) == (DRIVER, CUDA)
    assert [(g.name, g.memory_total_mb) for g in report.gpus] == [(H100["name"], 81559)]


def test_gpu_wire_shapes_follow_the_protocol(gpu_fixtures: Path) -> None:
    # given a detected H100
    [gpu] = parse_query_csv(_read(gpu_fixtures, H100, "nvidia-smi-query.csv")).gpus

    # then the register and heartbeat items carry exactly the protocol's fields
    assert gpu.registration() == {
        "index": 0,
        "uuid": H100["uuid"],
        "name": "NVIDIA H100 80GB HBM3",
        "memory_total_mb": 81559,
        "mig_mode": False,
    }
    assert gpu.telemetry() == {
        "index": 0,
        "uuid": H100["uuid"],
        "utilization_pct": 0,
        "memory_used_mb": 0,
        "memory_total_mb": 81559,
        "temperature_c": 49,
        "power_w": 134.98,
    }
