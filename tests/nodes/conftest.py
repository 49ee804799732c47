import pytest

from tests.factories import BOOTSTRAP, h100_registration


@pytest.fixture(autouse=True)
def _bootstrap_token(settings):
    settings.NODE_BOOTSTRAP_TOKEN = BOOTSTRAP
    # Most tests here register several hosts with the one bootstrap token; the tests of the
    # token's limit (test_registration_tokens.py) set the real default back.
    settings.NODE_REGISTRATION_TOKEN_MAX_USES = 50


@pytest.fixture
def registered(api_client):
    """(node_id, token) of a registered H100 node."""
    response = api_client.post("/api/v1/nodes/register", h100_registration(), format="json")
    assert response.status_code == 201, response.json()
    return response.json()["node_id"], response.json()["node_token"]
