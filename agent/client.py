"""The agent's one HTTP client: register, heartbeat and ack (see docs/agent-protocol.md).

Every request has a timeout. Network errors, 5xx and 429 are retried a bounded number of times
with capped exponential backoff and full jitter (``Retry-After`` honoured), then surface as
``ServerUnavailableError`` for the loop to log and try again next cycle. A 401 raises
``Unauthorized`` so the loop re-registers; any other 4xx raises ``RequestRejectedError``.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from agent import __version__
from agent.log import log

logger = logging.getLogger("agent.client")

REGISTER_PATH = "/api/v1/nodes/register"
HEARTBEAT_PATH = "/api/v1/nodes/heartbeat"
ACK_PATH = "/api/v1/nodes/commands/{id}/ack"
NODE_AUTH_HEADER = "X-Agent-API-Key"
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
MAX_RETRY_AFTER_S = 300.0


class ClientError(Exception):
    """Base of the errors the client raises."""


class Unauthorized(ClientError):  # noqa: N818 - the protocol's word for a 401
    """401: the node token (or the registration token) was refused."""


class ServerUnavailableError(ClientError):
    """The server could not be reached or kept failing (network, 5xx, 429) through the retries."""


class RequestRejectedError(ClientError):
    """The server refused the request with a 4xx other than 401 and 429."""

    def __init__(self, status_code: int, detail: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.data = data or {}  # the answer's JSON object, when it was one


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 30.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Full-jitter backoff: uniform in ``[0, min(cap, base * 2**attempt)]``.

    ``attempt`` counts from 0. The ceiling never exceeds ``cap``, however large ``attempt`` is.
    """
    ceiling = cap if attempt >= 62 else min(cap, base * (2 ** max(0, attempt)))
    return max(0.0, min(ceiling, rand() * ceiling))


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(MAX_RETRY_AFTER_S, seconds))


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class ServerClient:
    """httpx client for the three agent endpoints.

    ``wait(seconds)`` sleeps between retries and returns True when the agent is shutting down,
    which ends the retries at once.
    """

    def __init__(
        self,
        server_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        wait: Callable[[float], bool] = _sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.node_token: str | None = None
        self.max_attempts = max(1, max_attempts)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._wait = wait
        self._http = httpx.Client(
            base_url=server_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"gco-agent/{__version__}", "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def register(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``{"node_id", "node_token", "heartbeat_interval"}``; a 401 means a bad token."""
        return self._post(REGISTER_PATH, payload, authenticated=False)

    def heartbeat(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``{"heartbeat_interval", "commands", "wanted_pod_ids"}``."""
        return self._post(HEARTBEAT_PATH, payload, authenticated=True)

    def ack(self, command_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``{"id", "status"}``; replaying an ack is harmless on the server."""
        return self._post(ACK_PATH.format(id=command_id), body, authenticated=True)

    def _post(
        self, path: str, payload: Mapping[str, Any], *, authenticated: bool
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        if authenticated:
            if not self.node_token:
                raise Unauthorized("no node token: register first")
            headers[NODE_AUTH_HEADER] = self.node_token
        last_error = "no attempt made"
        for attempt in range(self.max_attempts):
            retry_after: float | None = None
            try:
                response = self._http.post(path, json=dict(payload), headers=headers)
            except httpx.TransportError as exc:  # connect/read/write timeouts, refused, DNS…
                last_error = f"{exc.__class__.__name__}: {exc}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._json(response)
                if status == 401:
                    raise Unauthorized(f"{path}: 401 {_detail(response)}")
                if status != 429 and status < 500:
                    raise RequestRejectedError(status, _detail(response), _json_object(response))
                last_error = f"HTTP {status}: {_detail(response)}"
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if attempt + 1 >= self.max_attempts:
                break
            delay = (
                # Retry-After is the earliest moment; spread a shed fleet over the next
                # interval instead of having it come back all at once.
                retry_after * (1 + random.random())  # noqa: S311 - jitter, not a secret
                if retry_after is not None
                else backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_cap)
            )
            log(
                logger,
                logging.WARNING,
                "client.retry",
                path=path,
                attempt=attempt + 1,
                delay_s=round(delay, 3),
                error=last_error,
            )
            if self._wait(delay):
                raise ServerUnavailableError(f"{path}: shutting down after {last_error}")
        raise ServerUnavailableError(f"{path}: {last_error}")

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError as exc:
            raise ServerUnavailableError(f"answer is not JSON: {response.text[:200]!r}") from exc
        if not isinstance(data, dict):
            raise ServerUnavailableError(f"answer is not a JSON object: {response.text[:200]!r}")
        return data


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _detail(response: httpx.Response) -> str:
    return response.text.strip()[:500] or response.reason_phrase
