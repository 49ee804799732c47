"""RunPod states and errors → ours (fact sheet §2.6, §2.7)."""

from typing import Any

import httpx

from apps.sourcing.adapters.base import (
    AccountError,
    AlreadyGoneError,
    CapacityError,
    CredentialsError,
    FatalError,
    InstanceState,
    ProviderError,
    RetryableError,
    retry_after_seconds,
)
from apps.sourcing.adapters.runpod.schemas import V2Pod

NAME = "runpod"

CAPACITY_MESSAGES = (
    "no longer any instances available",
    "not enough free gpus on the host",
    "does not have the resources to deploy your pod",
)
GONE_MESSAGES = ("pod not found", "nonexistent network volume")


def state_of(pod: V2Pod) -> InstanceState:
    status = (pod.status or "").upper()
    if status in ("PROVISIONING", "CREATED"):
        return InstanceState.CREATING
    if status in ("STARTING", "RESTARTING"):
        return InstanceState.STARTING
    if status == "RUNNING":
        direct = (pod.ssh or {}).get("direct")
        return InstanceState.RUNNING if (direct or pod.runtime) else InstanceState.STARTING
    if status in ("EXITED", "PAUSED"):
        return InstanceState.STOPPED
    if status in ("ERROR", "DEAD"):
        return InstanceState.FAILED
    if status == "TERMINATED":
        return InstanceState.TERMINATED
    return InstanceState.STARTING


def classify_message(message: str, *, code: str = "", status: int | None = None) -> ProviderError:
    lowered = message.lower()
    kw: dict[str, Any] = {"provider": NAME, "status": status, "code": code}
    if code == "SUPPLY_CONSTRAINT" or any(m in lowered for m in CAPACITY_MESSAGES):
        return CapacityError(message, **kw)
    if any(m in lowered for m in GONE_MESSAGES):
        return AlreadyGoneError(message, **kw)
    if code == "INTERNAL_SERVER_ERROR" or "something went wrong" in lowered:
        return RetryableError(message, **kw)
    return FatalError(message, **kw)


def classify(response: httpx.Response, op: str) -> ProviderError | None:
    """GraphQL answers resolver errors inside HTTP 200; REST v2 uses problem+json."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    kw: dict[str, Any] = {"provider": NAME, "status": status}
    if status == 429:
        return RetryableError(
            _detail(body) or "rate limit exceeded",
            retry_after=retry_after_seconds(response),
            **kw,
        )
    if status >= 500:
        return RetryableError(_detail(body) or f"HTTP {status}", **kw)
    if status == 401:
        return CredentialsError(_detail(body) or "Unauthorized", **kw)
    if status == 403:
        return AccountError(_detail(body) or "access denied", **kw)
    if status < 300:
        if isinstance(body, dict) and body.get("errors"):
            first = body["errors"][0] if isinstance(body["errors"][0], dict) else {}
            code = str((first.get("extensions") or {}).get("code") or "")
            return classify_message(str(first.get("message") or ""), code=code, status=status)
        return None
    detail = _detail(body) or response.text[:200]
    if status == 404:
        return AlreadyGoneError(detail or "resource not found", **kw)
    error = classify_message(detail, status=status)
    if isinstance(error, CapacityError | AlreadyGoneError):
        return error
    return FatalError(detail, **kw)


def _detail(body: object) -> str:
    if not isinstance(body, dict):
        return ""
    if body.get("errors") and isinstance(body["errors"], list):
        first = body["errors"][0]
        if isinstance(first, dict) and first.get("message"):
            return str(first["message"])
    return str(body.get("detail") or body.get("message") or body.get("error") or "")
