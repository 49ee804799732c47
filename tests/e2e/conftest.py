from tests.agent.conftest import busybox_image, docker_client  # noqa: F401 - shared fixtures
