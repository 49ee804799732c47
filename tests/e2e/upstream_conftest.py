"""A small image for container-cloud pods: static busybox with a shell, a web server and
netcat, made with `docker import` (no registry here)."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from tests.agent.conftest import _static_busybox, docker_client  # noqa: F401 - the fixture

NET_IMAGE = "local/upstream-busybox-net:1"
APPLETS = ("sh", "sleep", "echo", "cat", "env", "mkdir", "httpd", "nc", "ls", "true")


def _tar(busybox: Any) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in ("bin", "tmp", "etc"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def net_image(docker_client: Any) -> str:  # noqa: F811 - the fixture
    from docker.errors import ImageNotFound

    try:
        docker_client.images.get(NET_IMAGE)
        return NET_IMAGE
    except ImageNotFound:
        pass
    busybox = _static_busybox()
    if busybox is None:
        pytest.skip("no static busybox to build the image: `apt-get install -y busybox-static`")
    repository, tag = NET_IMAGE.rsplit(":", 1)
    docker_client.api.import_image_from_data(_tar(busybox), repository=repository, tag=tag)
    return NET_IMAGE
