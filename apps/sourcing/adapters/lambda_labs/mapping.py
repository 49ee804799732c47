"""Lambda states and error codes → ours (fact sheet §3.6, §3.7). Lambda says to branch on
`error.code`, never on the message."""

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
from apps.sourcing.adapters.lambda_labs.schemas import LambdaInstance

NAME = "lambda_labs"


def state_of(instance: LambdaInstance) -> InstanceState:
    status = instance.status.lower()
    if status == "booting":
        return InstanceState.STARTING
    if status == "active":
        return InstanceState.RUNNING if instance.ip else InstanceState.STARTING
    if status == "unhealthy":
        return InstanceState.FAILED
    if status in ("terminating", "terminated", "preempted"):
        return InstanceState.TERMINATED
    return InstanceState.STARTING


def classify(response: httpx.Response, op: str) -> ProviderError | None:
    status = response.status_code
    if status < 300:
        return None
    code, message = "", response.text[:200]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or message)
    kw: dict[str, Any] = {"provider": NAME, "status": status, "code": code}
    if status == 429:
        return RetryableError(
            message or "rate limited", retry_after=retry_after_seconds(response), **kw
        )
    if status >= 500 or code.startswith("provider/") or code == "global/unknown":
        return RetryableError(message, **kw)
    if code == "instance-operations/launch/insufficient-capacity":
        return CapacityError(message, **kw)
    if code in ("global/quota-exceeded", "global/account-inactive"):
        return AccountError(message, **kw)
    if status == 401 or code == "global/invalid-api-key":
        return CredentialsError(message, **kw)
    if status == 403:
        return AccountError(message, **kw)
    if status == 404 and op in ("get", "terminate"):
        return AlreadyGoneError(message, **kw)
    return FatalError(message, **kw)
