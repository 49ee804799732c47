"""Every route that names an object answers 404 to anyone but its owner, and changes nothing.

The routes are not listed by hand: the test walks the URL conf (`get_resolver()`), takes every
route that captures a parameter (an object's id, uuid or slug), and for each one either finds a
builder in BUILDERS (which makes the object, owned by user A) or a reason in EXEMPT. A route with
neither fails `test_every_object_route_has_an_owner_check`: adding a route means saying how its
owner check is tested. Then, for each registered route, user B sends every method the view
implements and must get 404 (not 403, which would confirm the object exists, and not 200), and
the database must be as it was (row counts of every table, and the object's own fields).

Routes are identified by their URL name (namespace:name), never by module path, so moving a
view to another module does not touch this test."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.apps import apps
from django.db import models
from django.forms.models import model_to_dict
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient
from rest_framework.views import APIView

from apps.accounts.models import SshKey
from apps.accounts.services import api_key_create
from apps.catalog.models import DeploymentKey
from apps.nodes.models import CommandType, NodeCommand
from apps.podconnect.services import pod_token_create
from apps.pods.models import PodTemplate, Volume
from apps.providers.models import Provider
from apps.providers.services import provider_register
from apps.providers.services.keys import provider_key_create
from apps.providers.services.payouts import payout_request
from apps.webhooks.services import endpoint_create
from tests.factories import CRYPTO, earn, fund, make_deployment, make_node, make_pod

pytestmark = pytest.mark.django_db

# Parts of the URL conf that are not ours to scope, or that no user's session reaches.
OUT_OF_SCOPE_PREFIXES = {
    "admin/": "the Django admin: staff only, its own permission checks",
    "accounts/": "allauth's own pages (sign-in, e-mail confirmation keys)",
}

EXEMPT: dict[str, str] = {
    "nodes-ack": "agent-authenticated: the caller is a node (its token), not a user",
    "nodes-agent-wheel": "public download of the agent wheel by file name; nobody owns it",
    "dashboard-provider-reset": "staff only: resets an upstream provider's breaker; no owner",
    "model-detail": "public catalog: a model template, the same for everyone",
    "model-deploy": "public catalog: deploys the caller's own copy of a public template",
    "catalog:deploy": "public catalog: the deploy page of a public template",
    "openai:model_detail": "deployment-key-authenticated: a key sees only its own deployment",
}

SSH_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdnokKSAXpwUoiekDEa3sSNhvpJAlxkZLMNNbMUhn4E idor@test"
)


@dataclass
class Route:
    name: str  # namespace:name, as reverse() takes it
    route: str  # the pattern, for messages
    view: Any
    kwargs: tuple[str, ...]

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/v1/") or self.route.startswith("v1/")

    def methods(self) -> list[str] | None:
        """The methods a DRF view implements; None for a function view (any may be refused
        with 405 before the lookup)."""
        cls = getattr(self.view, "cls", None)
        if cls is None or not issubclass(cls, APIView):
            return None
        return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)]


def _walk(resolver: URLResolver, prefix: str = "", namespace: str = "") -> Iterator[Route]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = namespace
            if entry.namespace:
                inner = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from _walk(entry, prefix + str(entry.pattern), inner)
        elif isinstance(entry, URLPattern):
            route = prefix + str(entry.pattern)
            params = tuple(sorted(set(entry.pattern.regex.groupindex)))
            name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
            yield Route(
                name=name or f"<unnamed {route}>", route=route, view=entry.callback, kwargs=params
            )


def object_routes() -> list[Route]:
    """Every route of ours that captures a parameter (an object identifier)."""
    found = []
    for route in _walk(get_resolver()):
        if any(route.route.startswith(prefix) for prefix in OUT_OF_SCOPE_PREFIXES):
            continue
        if route.kwargs:
            found.append(route)
    return found


# --- The objects, owned by user A -----------------------------------------------------------


@dataclass
class World:
    owner: Any
    stranger: Any
    owner_api: APIClient
    _cache: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def node(self) -> Any:
        return self.once("node", lambda: make_node("idor-host", gpus=2))

    @property
    def pod(self) -> Any:
        return self.once("pod", lambda: make_pod(self.owner, self.node))

    @property
    def provider(self) -> Provider:
        return self.once("provider", lambda: _provider(self.owner, "owner's farm"))

    @property
    def deployment(self) -> Any:
        return self.once(
            "deployment", lambda: make_deployment(self.owner, backends=["http://127.0.0.1:9"])[0]
        )


def _provider(user: Any, name: str) -> Provider:
    return provider_register(
        owner=user, display_name=name, payout_method="CRYPTO", payout_details=dict(CRYPTO)
    ).provider


Built = tuple[dict[str, Any], models.Model]


def _api_key(w: World) -> Built:
    key = api_key_create(user=w.owner, name="a's key").api_key
    return {"key_id": key.pk}, key


def _ssh_key(w: World) -> Built:
    response = w.owner_api.post("/api/v1/auth/ssh-keys", {"public_key": SSH_PUBLIC_KEY}, "json")
    assert response.status_code == 201, response.json()
    key = SshKey.objects.get(user=w.owner)
    return {"key_id": key.pk}, key


def _pod(w: World) -> Built:
    return {"pod_id": w.pod.pk}, w.pod


def _pod_log_command(w: World) -> Built:
    command = NodeCommand.objects.create(
        node=w.pod.node, type=CommandType.FETCH_LOGS, payload={"pod_id": str(w.pod.pk)}
    )
    return {"pod_id": w.pod.pk, "command_id": command.pk}, w.pod


def _pod_token(w: World) -> Built:
    token = pod_token_create(user=w.owner, pod_id=w.pod.pk, name="a's token").token
    return {"pod_id": w.pod.pk, "token_id": token.pk}, token


def _volume(w: World) -> Built:
    w.once("volume host", lambda: make_node("idor-disk", gpus=1))
    response = w.owner_api.post("/api/v1/volumes/", {"name": "data", "size_gb": 10}, "json")
    assert response.status_code == 201, response.json()
    volume = Volume.objects.get(owner=w.owner)
    return {"volume_id": volume.pk}, volume


def _pod_template(w: World) -> Built:
    body = {"slug": "a-trainer", "name": "A's trainer", "image": "local/busybox:1"}
    response = w.owner_api.post("/api/v1/pod-templates/", body, "json")
    assert response.status_code == 201, response.json()
    template = PodTemplate.objects.get(owner=w.owner)
    return {"template_id": template.pk}, template


def _provider_key(w: World) -> Built:
    key = provider_key_create(provider=w.provider, name="rack 1").key
    return {"key_id": key.pk}, key


def _provider_node(w: World) -> Built:
    node = make_node("a-farm-host", gpus=1, provider_id=w.provider.pk)
    return {"node_id": node.pk}, node


def _payout(w: World) -> Built:
    earn(w.provider, 20_000_000)
    payout = payout_request(
        provider=w.provider, amount=10_000_000, method="CRYPTO", details=dict(CRYPTO)
    ).payout
    return {"payout_id": payout.pk}, payout


def _deployment(w: World) -> Built:
    return {"deployment_id": w.deployment.pk}, w.deployment


def _deployment_key(w: World) -> Built:
    key = DeploymentKey.objects.filter(deployment=w.deployment).first()
    assert key is not None
    return {"deployment_id": w.deployment.pk, "key_id": key.pk}, key


def _webhook_endpoint(w: World) -> Built:
    with override_settings(WEBHOOK_ALLOW_PRIVATE_URLS=True):
        endpoint = endpoint_create(user=w.owner, url="http://127.0.0.1:9/hook").endpoint
    return {"endpoint_id": endpoint.pk}, endpoint


BUILDERS: dict[str, Callable[[World], Built]] = {
    # API
    "api-key-detail": _api_key,
    "ssh-key-detail": _ssh_key,
    "pod-detail": _pod,
    "pod-stop": _pod,
    "pod-resume": _pod,
    "pod-events": _pod,
    "pod-logs": _pod,
    "pod-access-tokens": _pod,
    "pod-access-token": _pod_token,
    "volume-detail": _volume,
    "pod-template-detail": _pod_template,
    "providers-key": _provider_key,
    "providers-node-pricing": _provider_node,
    "providers-payout": _payout,
    "deployment-detail": _deployment,
    "deployment-metrics": _deployment,
    "deployment-economics": _deployment,
    "deployment-events": _deployment,
    "deployment-key-rotate": _deployment,
    "deployment-keys": _deployment,
    "deployment-key": _deployment_key,
    "webhook-endpoint-detail": _webhook_endpoint,
    "webhook-deliveries": _webhook_endpoint,
    # Portal pages
    "accounts:api_key_revoke": _api_key,
    "accounts:ssh_key_delete": _ssh_key,
    "pods:volume_delete": _volume,
    "pods:detail": _pod,
    "pods:status": _pod,
    "pods:stop": _pod,
    "pods:resume": _pod,
    "pods:remove": _pod,
    "pods:logs_request": _pod,
    "pods:logs": _pod_log_command,
    "podconnect:terminal": _pod,
    "podconnect:access": _pod,
    "podconnect:token_revoke": _pod_token,
    "catalog:deployment": _deployment,
    "catalog:stop": _deployment,
    "catalog:rotate_key": _deployment,
    "catalog:scaling": _deployment,
    "providers:key_revoke": _provider_key,
    "providers:node_price": _provider_node,
    "webhooks:deliveries": _webhook_endpoint,
    "webhooks:endpoint_delete": _webhook_endpoint,
}

ROUTES = object_routes()


def test_every_object_route_has_an_owner_check():
    """A new route that takes an object's id must come with a builder here (so the check
    below runs for it) or an exemption saying why nobody's object is behind it."""
    names = {route.name for route in ROUTES}
    unchecked = [
        f"{route.name} ({route.route})"
        for route in ROUTES
        if route.name not in BUILDERS and route.name not in EXEMPT
    ]
    assert not unchecked, (
        "routes that take an object identifier but have no owner check registered in "
        f"{__name__}.BUILDERS (or a reason in EXEMPT): {unchecked}"
    )
    stale = sorted((set(BUILDERS) | set(EXEMPT)) - names)
    assert not stale, f"registered for routes the URL conf no longer has: {stale}"


def _table_counts() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for model in apps.get_models()
        if not model._meta.proxy and model._meta.managed
    }


def _fields(obj: models.Model) -> dict[str, Any]:
    fresh = type(obj)._default_manager.get(pk=obj.pk)
    return model_to_dict(fresh, fields=[f.name for f in fresh._meta.concrete_fields])


@pytest.fixture
def world(django_user_model, settings) -> World:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.POD_LOGS_WAIT_S = 0  # no agent here: the owner's log request answers 504 at once
    settings.PAYOUT_HOLD_SECONDS = 0  # A's earnings are payable at once (a payout to look at)
    owner = django_user_model.objects.create_user(email="a@example.com", password="pw-a-123456")
    stranger = django_user_model.objects.create_user(email="b@example.com", password="pw-b-12345")
    for user in (owner, stranger):
        fund(user, 100_000_000)
    # B is a provider too: provider routes must not answer "you are not a provider" (403)
    # but "no such object" (404).
    _provider(stranger, "stranger's farm")
    owner_api = APIClient()
    owner_api.force_authenticate(owner)
    return World(owner=owner, stranger=stranger, owner_api=owner_api)


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.name in BUILDERS], ids=lambda route: route.name
)
def test_another_users_object_is_404_and_unchanged(world: World, route: Route):
    kwargs, obj = BUILDERS[route.name](world)
    url = reverse(route.name, kwargs=kwargs)
    if route.is_api:
        client: Any = APIClient()
        client.force_authenticate(world.stranger)
    else:
        client = Client()
        client.force_login(world.stranger)

    before_rows, before_obj = _table_counts(), _fields(obj)
    implemented = route.methods()
    answers = {}
    for method in implemented or ["get", "post"]:
        send = getattr(client, method)
        response = send(url, {}, format="json") if route.is_api else send(url, {})
        answers[method.upper()] = response.status_code

    if implemented is not None:
        assert set(answers.values()) == {404}, f"{route.name} {url}: {answers}"
    else:
        # A function view may refuse a method it does not serve (405) before any lookup; the
        # methods it serves must not find the object.
        assert set(answers.values()) <= {404, 405} and 404 in answers.values(), (
            f"{route.name} {url}: {answers}"
        )
    assert _fields(obj) == before_obj, f"{route.name}: the object changed"
    assert _table_counts() == before_rows, f"{route.name}: rows were added or removed"


@pytest.mark.parametrize(
    "route", [r for r in ROUTES if r.name in BUILDERS], ids=lambda route: route.name
)
def test_the_owner_does_find_it(world: World, route: Route):
    """The builder makes an object its owner reaches, so the 404 above is about the stranger,
    not a wrong URL (a GET: not refused as missing or forbidden; 405 where the route only takes
    POST, 504 where it waits for an agent this test has not started)."""
    kwargs, _ = BUILDERS[route.name](world)
    url = reverse(route.name, kwargs=kwargs)
    if route.is_api:
        response = world.owner_api.get(url)
    else:
        client = Client()
        client.force_login(world.owner)
        response = client.get(url)
    assert response.status_code not in (401, 403, 404), (
        f"{route.name} {url}: {response.status_code}"
    )
