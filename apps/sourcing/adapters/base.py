"""What every upstream adapter shares: the typed offer/instance schemas, the error taxonomy
(fact sheet §4), and one HTTP path with timeouts, capped jittered exponential backoff for
retryable errors only, and a retry budget so an outage does not multiply upstream calls.

An adapter knows a base URL and an API key, nothing else: whether a simulator or the real
cloud answers is not its business."""

from __future__ import annotations

import asyncio
import enum
import json
import random
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from apps.core import metrics

# --- schemas ---------------------------------------------------------------------------------


class InstanceState(enum.StrEnum):
    """The common upstream state (fact sheet §1.6, §2.6, §3.6 map onto it). INTERRUPTED: the
    cloud took a spot (bid) rental back, or lost its host, while it was wanted running."""

    PENDING = "PENDING"
    CREATING = "CREATING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    INTERRUPTED = "INTERRUPTED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"


class ExecutionModel(enum.StrEnum):
    """How a cloud runs a customer's workload (DESIGN.md §7).

    CONTAINER: the rental *is* a container of the image named in the create call (Vast.ai,
    RunPod); there is no Docker engine and no systemd inside, so the customer's pod is the
    upstream instance: image, command, env, ports and disk go in the create call, and state,
    endpoints and logs come from the provider's API.
    VM: the rental is a machine (Lambda); its `user_data` installs our agent, which registers
    and runs pods in Docker like on a community host."""

    CONTAINER = "container"
    VM = "vm"


@dataclass(frozen=True)
class PortSpec:
    container_port: int
    protocol: str = "tcp"  # tcp | udp | http (RunPod's proxied HTTP)


@dataclass(frozen=True)
class WorkloadSpec:
    """The customer's pod as a container cloud runs it."""

    image: str
    command: tuple[str, ...] | None = None  # replaces the image's CMD; None keeps it
    env: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[PortSpec, ...] = ()
    disk_gb: int = 20


@dataclass(frozen=True)
class Offer:
    """A machine (or machine type) we could rent now. Prices are the upstream's, in
    micro-dollars per hour for the whole offer (`gpu_count` GPUs)."""

    provider: str
    offer_id: str
    gpu_model: str  # canonical
    gpu_count: int
    vram_gb: int  # per GPU
    price_per_hour: int
    region: str = ""
    reliability: float = 0.0  # 0..1 as the provider reports it (0: unknown)
    spot: bool = False
    provider_gpu_name: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def price_per_gpu_hour(self) -> int:
        return -(-self.price_per_hour // max(self.gpu_count, 1))


@dataclass(frozen=True)
class OfferFilters:
    gpu_model: str | None = None
    gpu_count: int | None = None
    max_price_per_gpu_hour: int | None = None  # upstream micro-dollars
    spot: bool = False
    limit: int = 1000


@dataclass(frozen=True)
class InstanceConfig:
    """What to run. `label` is our correlation key (Vast `label`, RunPod `name`, Lambda
    `name`): an ambiguous create is resolved by listing for it."""

    label: str
    image: str = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    disk_gb: int = 50
    env: Mapping[str, str] = field(default_factory=dict)
    startup_script: str = ""
    ssh_key_name: str = ""  # Lambda needs exactly one existing key name
    bid_per_gpu_hour: int | None = None  # spot bid, micro-dollars
    # The pod itself, for container clouds (image/command/env/ports/disk above are then the
    # pod's); VM clouds ignore it and run `startup_script`.
    workload: WorkloadSpec | None = None
    # Spot: bid the offer's own (spot) price, unless `bid_per_gpu_hour` says otherwise.
    spot: bool = False


@dataclass(frozen=True)
class Instance:
    provider: str
    instance_id: str
    label: str
    state: InstanceState
    provider_status: str = ""
    gpu_model: str | None = None
    gpu_count: int = 0
    price_per_hour: int | None = None
    public_ip: str = ""
    ssh_port: int | None = None
    message: str = ""
    # "8080/tcp" → "203.0.113.7:41023": where each of the container's ports answers
    endpoints: Mapping[str, str] = field(default_factory=dict)
    exit_code: int | None = None  # the container's, when it exited and the provider says


def endpoint(host: str, port: int | str) -> str:
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{int(port)}"


def usd_per_hour_to_micros(value: float | int | str) -> int:
    """Upstream dollars (float on the wire) → micro-dollars, rounded to the micro-dollar."""
    return round(float(value) * 1_000_000)


# --- errors ----------------------------------------------------------------------------------


class ErrorClass(enum.StrEnum):
    CAPACITY = "capacity"
    RETRYABLE = "retryable"
    ACCOUNT = "account"
    FATAL = "fatal"
    ALREADY_GONE = "already_gone"


class ProviderError(Exception):
    error_class: ErrorClass = ErrorClass.FATAL

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.provider} " if self.provider else ""
        status = f"HTTP {self.status} " if self.status else ""
        code = f"[{self.code}] " if self.code else ""
        return f"{where}{status}{code}{self.args[0]}"


class CapacityError(ProviderError):
    """Nothing was created: try the next offer or provider at once."""

    error_class = ErrorClass.CAPACITY


class RetryableError(ProviderError):
    """The same request may work later (429, 5xx, network)."""

    error_class = ErrorClass.RETRYABLE


class AmbiguousCreateError(RetryableError):
    """A create was sent and no answer came back: it may or may not have created an instance.
    Resolve by listing for the label before ever re-sending."""


class AccountError(ProviderError):
    """Our account cannot use this provider now (credit, quota, suspended): stop using it."""

    error_class = ErrorClass.ACCOUNT


class FatalError(ProviderError):
    """Our bug or bad credentials: do not retry."""

    error_class = ErrorClass.FATAL


class CredentialsError(FatalError):
    """The provider refused our API key (401/403)."""


class AlreadyGoneError(ProviderError):
    """The instance does not exist (any more): for terminate, that is success."""

    error_class = ErrorClass.ALREADY_GONE


class MalformedResponseError(RetryableError):
    """The body could not be read as the documented shape."""


class LogsUnavailableError(Exception):
    """The provider has no API for a container's logs; the message says so to the customer
    (in words that never name the upstream cloud)."""


# --- retry policy ----------------------------------------------------------------------------


class RetryBudget:
    """A token bucket shared by every call to one provider: each first attempt deposits
    `ratio` of a token, each retry spends one. During an outage first attempts still flow
    (and fail fast), but retries stop at about `ratio` of the traffic instead of multiplying
    it by the attempt count. Thread-safe; shared across event loops."""

    def __init__(self, *, ratio: float = 0.1, initial: float = 5.0, cap: float = 20.0) -> None:
        self.ratio = ratio
        self.cap = cap
        self._tokens = initial
        self._lock = threading.Lock()
        self.retries_taken = 0
        self.retries_refused = 0

    def on_request(self) -> None:
        with self._lock:
            self._tokens = min(self.cap, self._tokens + self.ratio)

    def try_retry(self) -> bool:
        with self._lock:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.retries_taken += 1
                return True
            self.retries_refused += 1
            return False

    @property
    def tokens(self) -> float:
        return self._tokens


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 5.0
    timeout: float = 10.0  # seconds for one HTTP call (connect, read, write, pool)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with full jitter (0.5–1.0 of the step); a server's
        Retry-After is honoured up to the cap."""
        step = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        jittered = step * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not crypto
        if retry_after is not None:
            return min(self.max_delay, max(jittered, retry_after))
        return jittered


Sleeper = Callable[[float], Any]


# --- the adapter interface -------------------------------------------------------------------


class ProviderAdapter(ABC):
    """One upstream cloud. Every method is async; errors are the classes above."""

    name: str = ""
    execution_model: ExecutionModel = ExecutionModel.VM
    supports_spot: bool = False

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        policy: RetryPolicy | None = None,
        budget: RetryBudget | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleeper | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.policy = policy or RetryPolicy()
        self.budget = budget or RetryBudget()
        self._sleep = sleep if sleep is not None else asyncio.sleep
        self.calls = 0  # upstream HTTP requests sent by this adapter
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.policy.timeout),
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ProviderAdapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @abstractmethod
    async def list_offers(self, filters: OfferFilters) -> list[Offer]: ...

    @abstractmethod
    async def create_instance(self, offer: Offer, config: InstanceConfig) -> Instance:
        """Rent `offer`. Capacity errors mean nothing was created; AmbiguousCreateError means
        the answer was lost (list by label to find out)."""

    @abstractmethod
    async def get_instance(self, instance_id: str) -> Instance:
        """The instance, or AlreadyGoneError."""

    @abstractmethod
    async def list_instances(self) -> list[Instance]: ...

    @abstractmethod
    async def terminate_instance(self, instance_id: str) -> None:
        """Destroy it; an instance already gone is success (no error)."""

    async def fetch_logs(self, instance_id: str, *, tail: int = 200) -> str:
        """The container's last `tail` log lines (container clouds that have a log API)."""
        raise LogsUnavailableError(
            "This pod runs on an upstream container cloud that offers no API for its logs: "
            "write them to a port you expose, or to a file you read over that port."
        )

    async def find_by_label(self, label: str) -> Instance | None:
        for instance in await self.list_instances():
            if instance.label == label and instance.state != InstanceState.TERMINATED:
                return instance
        return None

    # --- the one HTTP path ---

    @abstractmethod
    def classify(self, response: httpx.Response, op: str) -> ProviderError | None:
        """The error an HTTP answer carries (None: a success to parse)."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        op: str,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with a timeout; retry retryable errors with backoff while the budget allows.
        A non-idempotent request (a create) is re-sent only on answers that say it was not
        processed (429, 503); a lost answer raises AmbiguousCreateError at once."""
        self.budget.on_request()
        attempt = 0
        while True:
            attempt += 1
            try:
                self.calls += 1
                response = await self._client.request(method, path, json=json_body, params=params)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                metrics.observe_upstream(provider=self.name, op=op, outcome=type(exc).__name__)
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if not idempotent and sent:
                    raise AmbiguousCreateError(
                        f"no answer to {op}: {exc.__class__.__name__}", provider=self.name
                    ) from exc
                error: ProviderError = RetryableError(
                    f"{op}: {exc.__class__.__name__}: {exc}", provider=self.name
                )
            else:
                classified = self.classify(response, op)
                metrics.observe_upstream(
                    provider=self.name,
                    op=op,
                    outcome=type(classified).__name__ if classified else "ok",
                )
                if classified is None:
                    return response
                error = classified
                if (
                    not idempotent
                    and isinstance(error, RetryableError)
                    and response.status_code not in (429, 503)
                ):
                    # Only 429 and 503 say "not processed". A 500/502/504 (or RunPod's
                    # INTERNAL_SERVER_ERROR inside a 200) to a create may have created one.
                    raise AmbiguousCreateError(
                        str(error.args[0]),
                        provider=self.name,
                        status=response.status_code,
                        code=error.code,
                    )
            if not isinstance(error, RetryableError) or isinstance(error, MalformedResponseError):
                raise error
            if attempt >= self.policy.max_attempts or not self.budget.try_retry():
                raise error
            await self._sleep(self.policy.delay(attempt, error.retry_after))

    def json(self, response: httpx.Response, op: str) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedResponseError(
                f"{op}: the answer is not JSON ({response.text[:80]!r})",
                provider=self.name,
                status=response.status_code,
            ) from exc


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
