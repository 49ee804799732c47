"""Several keys per deployment, each with an optional monthly token budget and its own rate
limit: past its budget a key gets 429 `insufficient_quota` (OpenAI's code) while another key of
the same deployment goes on. Real proxy, Redis, Postgres and echo backend; keys made through
the API."""

import httpx
import openai
import pytest
from rest_framework.test import APIClient

from apps.catalog.load import keys_tokens_this_month
from tests.factories import fund, make_deployment
from tests.support import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner_api(user):
    fund(user, 100_000_000)
    client = APIClient()
    client.force_authenticate(user)
    return client


def ask(url, key, content="one two three", stream=False):
    return httpx.post(
        url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": "echo-model",
            "messages": [{"role": "user", "content": content}],
            "stream": stream,
            "stream_options": {"include_usage": True} if stream else None,
        },
        timeout=30,
    )


def test_key_over_its_budget_gets_insufficient_quota_while_another_goes_on(
    proxy_server, echo_backends, user, owner_api
):
    deployment, default_key = make_deployment(user, backends=[echo_backends()])
    made = owner_api.post(
        f"/api/v1/models/deployments/{deployment.pk}/keys",
        {"name": "small", "monthly_token_budget": 20},
        format="json",
    )
    assert made.status_code == 201, made.json()
    small = made.json()["api_key"]

    statuses = []
    for _ in range(10):  # each answer: 3 prompt + 4 completion tokens (words)
        response = ask(proxy_server.url, small, stream=len(statuses) % 2 == 1)
        statuses.append(response.status_code)
        if response.status_code == 429:
            break

    assert statuses == [200, 200, 200, 429]  # 7, 14, 21 ≥ 20: the fourth is refused
    error = response.json()["error"]
    assert error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert ask(proxy_server.url, default_key).status_code == 200  # the other key goes on
    client = openai.OpenAI(base_url=proxy_server.url + "/v1", api_key=small, max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="echo-model", messages=[{"role": "user", "content": "x"}]
        )
    assert raised.value.code == "insufficient_quota"
    key_id = made.json()["id"]
    wait_for(lambda: next(iter(keys_tokens_this_month([key_id]).values())) == 21, "tokens in Redis")
    listed = owner_api.get(f"/api/v1/models/deployments/{deployment.pk}/keys").json()
    assert {k["name"]: k["tokens_this_month"] for k in listed}["small"] == 21

    # Raising the budget lets the key go on (within the routing cache's lifetime).
    raised_budget = owner_api.patch(
        f"/api/v1/models/deployments/{deployment.pk}/keys/{key_id}",
        {"monthly_token_budget": 1000},
        format="json",
    )
    assert raised_budget.status_code == 200
    wait_for(lambda: ask(proxy_server.url, small).status_code == 200, "the new budget", 10)


def test_key_rate_limit_is_its_own(proxy_server, echo_backends, user, owner_api):
    deployment, default_key = make_deployment(user, backends=[echo_backends()])
    made = owner_api.post(
        f"/api/v1/models/deployments/{deployment.pk}/keys",
        {"name": "slow", "rate_limit_per_minute": 2},
        format="json",
    ).json()

    statuses = [ask(proxy_server.url, made["api_key"]).status_code for _ in range(3)]

    assert statuses[:2] == [200, 200] and statuses[2] == 429
    assert ask(proxy_server.url, default_key).status_code == 200


def test_key_api_validates_and_scopes(owner_api, other_user, user):
    other_client = APIClient()
    other_client.force_authenticate(other_user)
    deployment, _ = make_deployment(user, backends=["http://127.0.0.1:9"])
    url = f"/api/v1/models/deployments/{deployment.pk}/keys"

    bad = owner_api.post(url, {"monthly_token_budget": -5}, format="json")
    made = owner_api.post(url, {"name": "ci"}, format="json").json()
    bad_patch = owner_api.patch(f"{url}/{made['id']}", {"digest": "x"}, format="json")
    theirs = other_client.post(url, {"name": "mine now"}, format="json")
    revoked = owner_api.delete(f"{url}/{made['id']}")

    assert bad.status_code == 400 and "monthly_token_budget" in bad.json()["error"]["fields"]
    assert made["api_key"].startswith("sk_") and made["monthly_token_budget"] is None
    assert bad_patch.status_code == 400 and "digest" in bad_patch.json()["error"]["fields"]
    assert theirs.status_code == 404
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert [k["name"] for k in owner_api.get(url).json()] == ["default"]
