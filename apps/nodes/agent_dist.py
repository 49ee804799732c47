"""The agent as a wheel, built from `agent/` in memory so the installer can fetch exactly the
code this server runs. A wheel is a zip with a dist-info folder (PEP 427); building it by hand
needs no build backend on the server or on the host.

install.sh pins the wheel's SHA-256 and the dependency lock's (requirements/agent.lock, every
file hashed) at render time, and checks both before it installs anything; the wheel's digest is
also served beside it (`<wheel>.sha256`)."""

import base64
import hashlib
import io
import zipfile
from functools import cache
from pathlib import Path

from django.conf import settings

DIST_NAME = "gco_agent"


def _agent_version() -> str:
    text = (Path(settings.BASE_DIR) / "agent" / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("agent/__init__.py has no __version__")


def _requirements() -> list[str]:
    lines = (Path(settings.BASE_DIR) / "requirements" / "agent.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


LOCK_FILENAME = "requirements.lock"


def wheel_filename() -> str:
    return f"{DIST_NAME}-{_agent_version()}-py3-none-any.whl"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


@cache
def agent_wheel() -> bytes:
    version = _agent_version()
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    files: dict[str, bytes] = {}
    root = Path(settings.BASE_DIR)
    for source in sorted((root / "agent").rglob("*.py")):
        files[source.relative_to(root).as_posix()] = source.read_bytes()
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {DIST_NAME}",
        f"Version: {version}",
        "Summary: GPU Cloud Orchestrator host agent",
        "Requires-Python: >=3.10",
        *(f"Requires-Dist: {req}" for req in _requirements()),
    ]
    files[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: gco-server\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist_info}/entry_points.txt"] = b"[console_scripts]\ngco-agent = agent.main:main\n"
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            wheel.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@cache
def agent_wheel_sha256() -> str:
    return hashlib.sha256(agent_wheel()).hexdigest()


@cache
def agent_requirements_lock() -> bytes:
    """requirements/agent.lock, generated from agent.txt by requirements/agent_lock.py."""
    return (Path(settings.BASE_DIR) / "requirements" / "agent.lock").read_bytes()


def agent_requirements_lock_sha256() -> str:
    return hashlib.sha256(agent_requirements_lock()).hexdigest()
