"""Vast.ai states and errors → ours (fact sheet §1.6, §1.7)."""

import re
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
)
from apps.sourcing.adapters.vast_ai.schemas import VastInstance

NAME = "vast_ai"


EXIT_CODE = re.compile(r"exit(?:ed)?(?: with)?(?: code|,? status)\s*:?\s*(-?\d+)", re.IGNORECASE)


def exit_code(status_msg: str | None) -> int | None:
    found = EXIT_CODE.search(status_msg or "")
    return int(found[1]) if found else None


def state_of(instance: VastInstance) -> InstanceState:
    actual = (instance.actual_status or "").lower()
    intended = (instance.intended_status or "").lower()
    msg = instance.status_msg or ""
    if (instance.cur_state or "").lower() == "unloaded":
        return InstanceState.TERMINATED
    if actual in ("", "created"):
        if "OCI runtime create failed" in msg:
            return InstanceState.FAILED
        return InstanceState.CREATING
    if actual in ("loading", "rebooting", "restarting"):
        return InstanceState.STARTING
    if actual == "running":
        # An `args` rental has no SSH: it is up as soon as its container runs.
        up = instance.ports or instance.ssh_port or "args" in (instance.image_runtype or "")
        return InstanceState.RUNNING if up else InstanceState.STARTING
    if actual == "stopped":
        if intended == "running" and instance.is_bid:
            # Outbid (or its host reclaimed): a bid rental we want running was stopped.
            return InstanceState.INTERRUPTED
        return InstanceState.PENDING if intended == "running" else InstanceState.STOPPED
    if actual == "frozen":
        return InstanceState.STOPPED
    if actual == "exited":
        return InstanceState.FAILED if intended == "running" else InstanceState.STOPPED
    if actual == "offline" and instance.is_bid:
        return InstanceState.INTERRUPTED  # the host is gone; a bid rental does not come back
    if actual in ("unknown", "offline"):
        return InstanceState.STARTING  # transient for a grace period; our deadlines decide
    return InstanceState.STARTING


def classify(response: httpx.Response, op: str) -> ProviderError | None:
    status = response.status_code
    text = response.text
    code, msg = "", text.strip()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or "")
        msg = str(body.get("msg") or body.get("message") or body.get("detail") or msg)
        if status < 300 and body.get("success") is False:
            status = 400 if "no_such_ask" not in f"{code} {msg}" else 404
    if status < 300:
        return None
    marker = f"{code} {msg}"
    kw: dict[str, Any] = {"provider": NAME, "status": response.status_code, "code": code}
    if status == 429:
        return RetryableError(msg or "API requests too frequent", **kw)
    if status in (502, 503, 504) or status >= 500:
        return RetryableError(msg or f"HTTP {status}", **kw)
    if "no_such_ask" in marker or "3603" in marker or "3907" in marker:
        return CapacityError(msg, **kw)
    if status == 403 and "not your own" in msg:
        return CapacityError(msg, **kw)
    if status == 401 or code == "auth_error":
        return CredentialsError(msg or "Invalid user key", **kw)
    if code == "insufficient_credit":
        return AccountError(msg, **kw)
    if status == 403:
        return CredentialsError(msg or "forbidden", **kw)
    if status == 404 and op in ("get", "terminate", "logs"):
        return AlreadyGoneError(msg or "Instance not found", **kw)
    return FatalError(msg or f"HTTP {status}", **kw)
