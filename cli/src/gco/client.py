"""The SDK: one `Client` per server and API key, the same calls the `gco` command makes.

    from gco import Client
    client = Client(api_key="gco_…")            # or GCO_API_KEY / `gco login`'s config
    pod = client.pods.create(name="train", image="pytorch/pytorch", gpu_model="H100 SXM",
                             gpu_count=1, price_cap_per_gpu_hour_usd="3.00")
    pod = client.pods.wait(pod.id)              # until RUNNING or a terminal state
    print(client.pods.logs(pod.id).logs)

Every call raises `ApiError` (with the server's `status`, `code`, `message`, `fields`) for a
4xx or 5xx answer, and `NetworkError` when the server cannot be reached."""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from gco import config
from gco.models import (
    ApiKey,
    ApiKeyCreated,
    Balance,
    Deployment,
    DeploymentCreated,
    Deposit,
    Gpu,
    Me,
    ModelTemplate,
    Pod,
    PodLogs,
    Token,
)

T = TypeVar("T", bound=BaseModel)

# A pod in one of these states will not become RUNNING by waiting.
POD_TERMINAL = frozenset({"STOPPING", "STOPPED", "FAILED", "INTERRUPTED", "TERMINATED"})


class GcoError(Exception):
    """Base of the SDK's errors."""


class NetworkError(GcoError):
    """The server could not be reached, or did not answer in time."""


class ApiError(GcoError):
    """The server answered with an error: `{"error": {status, code, message, fields}}`."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str]) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status < 500


class PodWaitError(GcoError):
    """The pod reached a state it will not leave for RUNNING, or the wait ran out."""

    def __init__(self, message: str, pod: Pod) -> None:
        super().__init__(message)
        self.pod = pod


def _error_from(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        fields = error.get("fields") or {}
        return ApiError(
            int(error.get("status") or response.status_code),
            str(error.get("code") or "error"),
            str(error.get("message") or response.reason_phrase),
            {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {},
        )
    text = response.text.strip()[:300] or response.reason_phrase
    return ApiError(response.status_code, "http_error", f"HTTP {response.status_code}: {text}", {})


class _Resource:
    def __init__(self, client: Client) -> None:
        self._client = client


class Pods(_Resource):
    def create(self, *, idempotency_key: str | None = None, **fields: Any) -> Pod:
        """`POST /api/v1/pods/` with the fields of PodCreateInput (name, image, gpu_model,
        gpu_count, command, env, ports, price_cap_per_gpu_hour_usd, cloud, …)."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        body = {k: v for k, v in fields.items() if v is not None}
        return self._client._call("POST", "/api/v1/pods/", Pod, json=body, headers=headers)

    def list(self) -> list[Pod]:
        return self._client._call("GET", "/api/v1/pods/", list[Pod])

    def get(self, pod_id: str | UUID) -> Pod:
        return self._client._call("GET", f"/api/v1/pods/{pod_id}", Pod)

    def logs(self, pod_id: str | UUID, *, tail: int = 200) -> PodLogs:
        return self._client._call(
            "GET", f"/api/v1/pods/{pod_id}/logs", PodLogs, params={"tail": tail}
        )

    def stop(self, pod_id: str | UUID) -> Pod:
        return self._client._call("POST", f"/api/v1/pods/{pod_id}/stop", Pod)

    def delete(self, pod_id: str | UUID) -> Pod:
        return self._client._call("DELETE", f"/api/v1/pods/{pod_id}", Pod)

    def wait(
        self,
        pod_id: str | UUID,
        *,
        timeout: float = 600,
        interval: float = 1.0,
        on_status: Callable[[Pod], None] | None = None,
    ) -> Pod:
        """Poll until the pod is RUNNING; raise PodWaitError when it reaches a state it will not
        leave for RUNNING or `timeout` seconds pass. `on_status` sees every answer."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.get(pod_id)
            if on_status is not None:
                on_status(pod)
            if pod.status == "RUNNING":
                return pod
            if pod.status in POD_TERMINAL:
                reason = f": {pod.status_reason}" if pod.status_reason else ""
                raise PodWaitError(f"pod {pod.id} is {pod.status}{reason}", pod)
            if time.monotonic() >= deadline:
                raise PodWaitError(f"pod {pod.id} is still {pod.status} after {timeout:g} s", pod)
            time.sleep(interval)  # polling the server, not synchronising


class Models(_Resource):
    def list(
        self, *, category: str | None = None, search: str | None = None
    ) -> list[ModelTemplate]:
        params = {k: v for k, v in {"category": category, "search": search}.items() if v}
        return self._client._call("GET", "/api/v1/models", list[ModelTemplate], params=params)

    def deploy(self, slug: str, **fields: Any) -> DeploymentCreated:
        """`POST /api/v1/models/{slug}/deploy` (gpu_model, gpu_count, replicas, name, …)."""
        body = {k: v for k, v in fields.items() if v is not None}
        return self._client._call(
            "POST", f"/api/v1/models/{slug}/deploy", DeploymentCreated, json=body
        )

    def deployments(self) -> builtins.list[Deployment]:
        return self._client._call("GET", "/api/v1/models/deployments", list[Deployment])

    def deployment(self, deployment_id: str | UUID) -> Deployment:
        return self._client._call("GET", f"/api/v1/models/deployments/{deployment_id}", Deployment)

    def delete(self, deployment_id: str | UUID) -> Deployment:
        return self._client._call(
            "DELETE", f"/api/v1/models/deployments/{deployment_id}", Deployment
        )


class Keys(_Resource):
    def list(self) -> list[ApiKey]:
        return self._client._call("GET", "/api/v1/auth/api-keys", list[ApiKey])

    def create(
        self,
        name: str,
        *,
        scopes: Sequence[str] | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyCreated:
        """A new key; without `scopes` it has every scope (read, pods, models, billing), and
        without `expires_at` it never expires."""
        body: dict[str, Any] = {"name": name}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if expires_at is not None:
            body["expires_at"] = expires_at.isoformat()
        return self._client._call("POST", "/api/v1/auth/api-keys", ApiKeyCreated, json=body)

    def revoke(self, key_id: str | UUID) -> None:
        self._client._call("DELETE", f"/api/v1/auth/api-keys/{key_id}", None)


class Client:
    """An API client. `api_url` and `api_key` default to GCO_API_URL / GCO_API_KEY, then to
    what `gco login` stored."""

    def __init__(
        self,
        api_key: str | None = None,
        api_url: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        anonymous: bool = False,
    ) -> None:
        """`anonymous`: send no key at all (only `login` works then)."""
        settings = config.resolve(api_key=api_key, api_url=api_url)
        self.api_url = settings.api_url
        self.api_key = None if anonymous else settings.api_key
        headers = {"User-Agent": "gco-cli", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = httpx.Client(
            base_url=self.api_url, headers=headers, timeout=timeout, transport=transport
        )
        self.pods = Pods(self)
        self.models = Models(self)
        self.keys = Keys(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        model: Any,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TimeoutException as exc:
            raise NetworkError(f"{self.api_url} did not answer in time ({exc})") from exc
        except httpx.HTTPError as exc:
            raise NetworkError(f"cannot reach {self.api_url}: {exc}") from exc
        if response.status_code >= 400:
            raise _error_from(response)
        if model is None:
            return None
        try:
            return TypeAdapter(model).validate_json(response.content)
        except ValidationError as exc:
            raise ApiError(
                response.status_code,
                "unexpected_answer",
                f"the server's answer to {method} {path} is not what this client expects: {exc}",
                {},
            ) from exc

    # -- account and money -------------------------------------------------------------------

    def login(self, email: str, password: str) -> Token:
        """Exchange email and password for a JWT (`gco login --email` uses it once to create
        an API key; the CLI keeps the key, never the password)."""
        return self._call(
            "POST", "/api/v1/auth/login", Token, json={"email": email, "password": password}
        )

    def me(self) -> Me:
        return self._call("GET", "/api/v1/users/me", Me)

    def gpus(self) -> list[Gpu]:
        """The price list: free GPUs of own nodes and upstream offers, per model."""
        return self._call("GET", "/api/v1/nodes/available", list[Gpu])

    def balance(self) -> Balance:
        return self._call("GET", "/api/v1/users/balance", Balance)

    def deposit(self, amount_usd: str, *, idempotency_key: str | None = None) -> Deposit:
        """Start a top-up: the answer's `checkout_url` is the Stripe Checkout page to pay on."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call(
            "POST",
            "/api/v1/users/deposit",
            Deposit,
            json={"amount_usd": amount_usd},
            headers=headers,
        )
