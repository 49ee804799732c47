"""Real servers for the proxy's tests: our ASGI app under uvicorn (in a thread of the test
process, so it sees the test database) and echo test backends as separate processes (so a test
can kill one). The servers themselves are in tests/support.py; deployments in tests/factories.py."""

from collections.abc import Callable, Iterator

import pytest

from tests.support import AsgiServer, Backend, start_backend


@pytest.fixture
def echo_backends() -> Iterator[Callable[..., Backend]]:
    started: list[Backend] = []

    def start(name: str = "echo", chunk_interval: float = 0.0) -> Backend:
        backend = start_backend("echo-test", name=name, chunk_interval=chunk_interval)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.kill()


@pytest.fixture
def proxy_server(transactional_db) -> Iterator[AsgiServer]:
    from apps.proxy.routing import router, usage_buffer

    router.invalidate()
    usage_buffer.take()
    server = AsgiServer().start()
    yield server
    server.stop()
    usage_buffer.take()
