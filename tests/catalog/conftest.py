import pytest

from apps.catalog.services.templates import templates_seed
from tests.factories import fund, make_node


@pytest.fixture
def catalog(db):
    templates_seed()


@pytest.fixture
def cpu_node(db):
    """An online CPU-only node (like the local agent): CPU deployments land on it."""
    return make_node("cpu-host", gpus=0)


@pytest.fixture
def gpu_node(db):
    return make_node("gpu-host", gpus=2, name="NVIDIA GeForce RTX 4090")


@pytest.fixture
def other_client(django_user_model):
    from rest_framework.test import APIClient

    other = django_user_model.objects.create_user(email="tenant@example.com", password="x-pass-1")
    fund(other, 100_000_000)
    client = APIClient()
    client.force_authenticate(other)
    return client
