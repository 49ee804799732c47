"""Query counts of the hot list and detail endpoints: the same for N objects as for 2N (no
query per row), and at most the baseline recorded here.

Each case builds N objects (through the services or the API the product uses), counts the
queries of one request, builds N more, counts again. The two counts must be equal, and the
second at most BASELINE (the count measured when this module was written: if a change needs
more, raise it in the same commit and say why; if it needs fewer, lower it).

Portal pages keep their own guards next to their tests (tests/*/test_portal_views.py)."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.services import api_key_create
from apps.billing.models import AccountKind, TransactionKind
from apps.billing.services import ledger_post, platform_account, wallet_for
from apps.catalog.models import Deployment
from apps.catalog.services.deploy import deployment_key_issue
from apps.catalog.services.templates import templates_seed
from apps.pods.models import Pod, PodEvent
from apps.providers.services import provider_register
from apps.providers.services.keys import provider_key_create
from apps.providers.services.payouts import payout_request
from tests.factories import CRYPTO, POD, earn, fund, make_node

pytestmark = pytest.mark.django_db

N = 3


@dataclass
class Ctx:
    """What a case's steps share: the users, their clients, the objects made so far."""

    owner: Any
    owner_api: APIClient
    admin_api: APIClient
    made: dict[str, Any]


@dataclass
class Case:
    name: str
    baseline: int  # queries of one request with 2N objects, as measured
    url: Callable[[Ctx], str]
    grow: Callable[[Ctx, int], None]  # add n more of the objects the response lists
    setup: Callable[[Ctx], None] = lambda ctx: None
    admin: bool = False


def _pods(ctx: Ctx, n: int) -> None:
    for _ in range(n):
        response = ctx.owner_api.post("/api/v1/pods/", POD, format="json")
        assert response.status_code == 201, response.json()


def _pod_setup(ctx: Ctx) -> None:
    make_node("qc-host", gpus=8)
    _pods(ctx, 1)
    ctx.made["pod"] = Pod.objects.get(owner=ctx.owner)


def _pod_events(ctx: Ctx, n: int) -> None:
    pod = ctx.made["pod"]
    for i in range(n):
        PodEvent.objects.create(
            pod=pod, from_status=pod.status, to_status=pod.status, reason=f"event {i}"
        )


def _deploy(ctx: Ctx, n: int) -> None:
    for _ in range(n):
        with TestCase.captureOnCommitCallbacks(execute=True):
            response = ctx.owner_api.post(
                "/api/v1/models/local-echo-test/deploy", {}, format="json"
            )
        assert response.status_code == 201, response.json()


def _deployment_setup(ctx: Ctx) -> None:
    templates_seed()
    make_node("qc-cpu", gpus=0)
    _deploy(ctx, 1)
    ctx.made["deployment"] = Deployment.objects.get(owner=ctx.owner)


def _deployment_keys(ctx: Ctx, n: int) -> None:
    for i in range(n):
        deployment_key_issue(deployment=ctx.made["deployment"], name=f"key {i}")


def _nodes(ctx: Ctx, n: int) -> None:
    for _ in range(n):
        make_node(f"qc-{uuid.uuid4().hex[:6]}", gpus=2)


def _transactions(ctx: Ctx, n: int) -> None:
    for _ in range(n):
        ledger_post(
            kind=TransactionKind.USAGE,
            idempotency_key=f"qc:{uuid.uuid4()}",
            memo="RTX 4090 × 1, 10 min",
            lines=[
                (wallet_for(ctx.owner), -100_000),
                (platform_account(AccountKind.PLATFORM_REVENUE), 100_000),
            ],
        )


def _api_keys(ctx: Ctx, n: int) -> None:
    for i in range(n):
        api_key_create(user=ctx.owner, name=f"key {i}")


def _volumes(ctx: Ctx, n: int) -> None:
    for i in range(n):
        body = {"name": f"data-{i}-{uuid.uuid4().hex[:4]}", "size_gb": 10}
        response = ctx.owner_api.post("/api/v1/volumes/", body, format="json")
        assert response.status_code == 201, response.json()


def _provider_setup(ctx: Ctx) -> None:
    ctx.made["provider"] = provider_register(
        owner=ctx.owner, display_name="qc farm", payout_method="CRYPTO", payout_details=CRYPTO
    ).provider


def _provider_nodes(ctx: Ctx, n: int) -> None:
    for _ in range(n):
        make_node(f"qc-farm-{uuid.uuid4().hex[:6]}", gpus=2, provider_id=ctx.made["provider"].pk)


def _provider_keys(ctx: Ctx, n: int) -> None:
    for i in range(n):
        provider_key_create(provider=ctx.made["provider"], name=f"rack {i}")


def _payouts(ctx: Ctx, n: int) -> None:
    for _ in range(n):
        earn(ctx.made["provider"], 10_000_000)
        payout_request(
            provider=ctx.made["provider"], amount=10_000_000, method="CRYPTO", details=CRYPTO
        )


CASES = [
    Case("pods list", 1, lambda c: "/api/v1/pods/", _pods, _pod_setup),
    Case("pod detail", 1, lambda c: f"/api/v1/pods/{c.made['pod'].pk}", _pod_events, _pod_setup),
    Case(
        "pod events",
        2,
        lambda c: f"/api/v1/pods/{c.made['pod'].pk}/events",
        _pod_events,
        _pod_setup,
    ),
    Case("deployments list", 3, lambda c: "/api/v1/models/deployments", _deploy, _deployment_setup),
    Case(
        "deployment detail",
        3,
        lambda c: f"/api/v1/models/deployments/{c.made['deployment'].pk}",
        _deployment_keys,
        _deployment_setup,
    ),
    Case(
        "deployment keys",
        4,
        lambda c: f"/api/v1/models/deployments/{c.made['deployment'].pk}/keys",
        _deployment_keys,
        _deployment_setup,
    ),
    Case("nodes list", 2, lambda c: "/api/v1/nodes/", _nodes, admin=True),
    Case("transactions list", 2, lambda c: "/api/v1/users/transactions", _transactions),
    Case("API keys list", 1, lambda c: "/api/v1/auth/api-keys", _api_keys),
    Case(
        "volumes list",
        2,
        lambda c: "/api/v1/volumes/",
        _volumes,
        lambda c: make_node("qc-disk", gpus=1) and None,
    ),
    Case(
        "provider nodes", 4, lambda c: "/api/v1/providers/nodes", _provider_nodes, _provider_setup
    ),
    Case(
        "provider dashboard",
        10,
        lambda c: "/api/v1/providers/dashboard",
        _provider_nodes,
        _provider_setup,
    ),
    Case("provider keys", 2, lambda c: "/api/v1/providers/keys", _provider_keys, _provider_setup),
    Case("provider payouts", 2, lambda c: "/api/v1/providers/payouts", _payouts, _provider_setup),
]


@pytest.fixture
def ctx(user, admin_user, settings) -> Ctx:
    settings.PAYOUT_HOLD_SECONDS = 0
    settings.PAYOUT_MINIMUM_MICROS = 10_000_000
    fund(user, 1_000_000_000)
    owner_api, admin_api = APIClient(), APIClient()
    owner_api.force_authenticate(user)
    admin_api.force_authenticate(admin_user)
    return Ctx(owner=user, owner_api=owner_api, admin_api=admin_api, made={})


def _queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return len(captured)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_queries_do_not_grow_with_rows_and_stay_within_the_baseline(ctx: Ctx, case: Case):
    case.setup(ctx)
    client = ctx.admin_api if case.admin else ctx.owner_api
    url = case.url(ctx)
    case.grow(ctx, N)
    with_n = _queries(client, url)
    case.grow(ctx, N)
    with_2n = _queries(client, url)
    assert with_2n == with_n, f"{case.name}: {with_n} queries for {N} rows, {with_2n} for {2 * N}"
    assert with_2n <= case.baseline, f"{case.name}: {with_2n} queries (baseline {case.baseline})"
