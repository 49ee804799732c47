"""Write requirements/agent.lock: requirements/agent.txt resolved by pip, every distribution
pinned by SHA-256, for `pip install --require-hashes` on GPU hosts (install.sh). Run it after
changing agent.txt: `make agent-lock` (it needs the package index, nothing else).

pip downloads what it resolves for this machine; for a package whose wheel is platform-specific
the pure-Python wheel of the same version is added too (when one exists), so the lock installs on
any host's Python, and pip, given several allowed hashes, takes the file that matches one."""

import hashlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "agent.txt"
LOCK = HERE / "agent.lock"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)  # noqa: S603 - our own args


def _name_version(filename: str) -> tuple[str, str]:
    name, version = filename.split("-")[:2]
    return re.sub(r"[-_.]+", "-", name).lower(), version


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        resolved = Path(tmp) / "resolved"
        _pip("download", "--quiet", "--only-binary=:all:", "-r", str(SOURCE), "-d", str(resolved))
        files = sorted(resolved.iterdir())
        for wheel in [f for f in files if not f.name.endswith("-none-any.whl")]:
            name, version = _name_version(wheel.name)
            pure = Path(tmp) / f"pure-{name}"
            try:
                _pip(
                    "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--platform", "any", "--implementation", "py", "--python-version", "3.11",
                    "-d", str(pure), f"{name}=={version}",
                )  # fmt: skip
            except subprocess.CalledProcessError:
                continue  # no pure wheel: the lock holds the platform wheel only
            files += sorted(pure.iterdir())
        pins: dict[tuple[str, str], set[str]] = {}
        for path in files:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            pins.setdefault(_name_version(path.name), set()).add(digest)
    lines = [
        "# The agent's dependencies, every file pinned by SHA-256 (pip install --require-hashes).",
        "# Generated from requirements/agent.txt by requirements/agent_lock.py: do not edit.",
    ]
    for (name, version), digests in sorted(pins.items()):
        lines.append(f"{name}=={version} \\")
        hashes = sorted(digests)
        for i, digest in enumerate(hashes):
            lines.append(f"    --hash=sha256:{digest}" + (" \\" if i + 1 < len(hashes) else ""))
    LOCK.write_text("\n".join(lines) + "\n")
    print(f"wrote {LOCK} ({len(pins)} packages)")


if __name__ == "__main__":
    main()
