import pytest

from tests.factories import node_with_token


@pytest.fixture
def node_and_token():
    return node_with_token()
