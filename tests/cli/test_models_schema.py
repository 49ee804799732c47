"""The SDK's models (cli/src/gco/models.py) against the server's OpenAPI schema (what
/api/schema/ serves): each model has exactly its component's fields, with the same ones
required, so a change on either side fails here until the other follows."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from gco.models import SCHEMA_MODELS, ApiModel, DeploymentCreated


@pytest.fixture(scope="module")
def components() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]


@pytest.mark.parametrize("model", SCHEMA_MODELS, ids=lambda m: m.__name__)
def test_each_model_has_its_components_fields(model: type[ApiModel], components):
    component = components[model.schema_name]
    assert set(model.model_fields) == set(component["properties"])
    required_by_model = {n for n, f in model.model_fields.items() if f.is_required()}
    assert required_by_model == set(component.get("required", []))


def test_every_answer_of_the_sdk_is_a_schema_component_or_documented(components):
    # The deploy answer is DeploymentOutput plus the key shown once (apps/catalog/api.py).
    assert set(DeploymentCreated.model_fields) - set(
        components["DeploymentOutput"]["properties"]
    ) == {"api_key"}
