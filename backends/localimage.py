"""The container image the local agent runs the CPU backends in, and the mounts that go with it.

There is no registry here and the backends' Python environment is 1.5 GB, so instead of an
image that carries Python, `gco-local/host-python:1` is a near-empty root filesystem made with
`docker import`: the usual top-level symlinks into `/usr`, a `/etc` with the host's dynamic
loader cache, and empty mount points. The local agent binds the host's files into every pod
container read-only (`--mount`, or GPU_AGENT_MOUNTS):

    /usr                        → /usr                 (libc, libstdc++, espeak-ng, …)
    <python's base prefix>      → the same path        (the interpreter the venv points to)
    <models venv>               → /opt/gco/venv        (backends' packages)
    <this checkout>             → /opt/gco/app         (the `backends` package, PYTHONPATH)

and runs it with host networking, so the replica answers on 127.0.0.1:<its port>. The
container still gets Docker's lifecycle, labels, logs, stop and restart like any pod.

    python -m backends.localimage build            # import the image (idempotent)
    python -m backends.localimage mounts --venv V  # the GPU_AGENT_MOUNTS value for venv V
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path
from typing import Any

IMAGE = "gco-local/host-python:1"
ROOT = Path(__file__).resolve().parent.parent
LINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
DIRS = ("usr", "etc", "root", "opt/gco/venv", "opt/gco/app", "proc", "sys", "dev", "run")
ETC_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    "etc/group": b"root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files dns\n",
}


def rootfs_tar() -> bytes:
    """The image's whole root filesystem as a tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in DIRS:
            entry = tarfile.TarInfo(name)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            tar.addfile(entry)
        tmp = tarfile.TarInfo("tmp")
        tmp.type = tarfile.DIRTYPE
        tmp.mode = 0o1777
        tar.addfile(tmp)
        for name, target in LINKS.items():
            link = tarfile.TarInfo(name)
            link.type = tarfile.SYMTYPE
            link.linkname = target
            tar.addfile(link)
        files = dict(ETC_FILES)
        # Debian keeps its libraries in multiarch folders that only the loader cache names.
        for extra in ("/etc/ld.so.cache", "/etc/ld.so.conf"):
            path = Path(extra)
            if path.is_file():
                files[extra.lstrip("/")] = path.read_bytes()
        for name, data in files.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(data))
    return buffer.getvalue()


def ensure_image(client: Any | None = None, image: str = IMAGE) -> str:
    """Import the image unless the engine has it; its name."""
    import docker  # type: ignore[import-untyped, unused-ignore]
    from docker.errors import ImageNotFound  # type: ignore[import-untyped, unused-ignore]

    client = client or docker.from_env()
    try:
        client.images.get(image)
        return image
    except ImageNotFound:
        pass
    repository, _, tag = image.partition(":")
    client.api.import_image_from_data(rootfs_tar(), repository=repository, tag=tag or "latest")
    return image


def base_prefix(venv: Path) -> Path:
    """The Python installation a venv was made from (its pyvenv.cfg `home` is its bin/)."""
    for line in (venv / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return Path(value.strip()).resolve().parent
    raise ValueError(f"{venv}/pyvenv.cfg names no home")


def agent_mounts(venv: Path, app: Path = ROOT) -> list[str]:
    """The agent `--mount` values that let the image run `python -m backends` from `venv`."""
    venv = venv.resolve()
    prefix = base_prefix(venv)
    mounts = ["/usr:/usr:ro"]
    if not str(prefix).startswith("/usr/"):
        mounts.append(f"{prefix}:{prefix}:ro")
    mounts += [f"{venv}:/opt/gco/venv:ro", f"{app.resolve()}:/opt/gco/app:ro"]
    return mounts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backends.localimage")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help=f"import {IMAGE} into the local Docker engine")
    mounts = sub.add_parser("mounts", help="print GPU_AGENT_MOUNTS for a venv")
    mounts.add_argument("--venv", default=str(Path(sys.prefix)))
    args = parser.parse_args(argv)
    if args.command == "build":
        print(ensure_image())
    else:
        print(",".join(agent_mounts(Path(args.venv))))


if __name__ == "__main__":
    main()
