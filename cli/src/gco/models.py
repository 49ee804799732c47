"""Typed answers of the API. Each model names the OpenAPI component it mirrors
(`schema_name`); tests/cli/test_models_schema.py checks that every model has exactly that
component's fields, so a change to the server's schema fails the tests until this file follows.

Models accept fields they do not know (a newer server may add some) and keep them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    schema_name: ClassVar[str]


class Gpu(ApiModel):
    """A line of the price list (`GET /api/v1/nodes/available`)."""

    schema_name = "AvailableGpuOutput"
    gpu_model: str
    vram_mb: int
    free_gpus: int
    max_gpus_per_node: int
    nodes: int
    price_per_gpu_hour: int
    price_per_gpu_hour_usd: str
    source: str | None = None
    provider_kind: str | None = None
    provider: str | None = None
    reliability: float | None = None
    spot: bool | None = None


class Pod(ApiModel):
    schema_name = "PodOutput"
    id: UUID
    name: str
    image: str
    command: Any = None
    env: Any = None
    ports: Any = None
    gpu_model: str
    gpu_count: int
    min_vram_mb: int | None = None
    disk_gb: int | None = None
    price_cap_per_gpu_hour: int | None = None
    restartable: bool | None = None
    cloud: str | None = None
    strategy: str | None = None
    interruptible: bool | None = None
    bid_cap_per_gpu_hour: int | None = None
    restart: str | None = None
    interruptions: int | None = None
    status: str = ""
    status_reason: str = ""
    node: dict[str, Any] | None
    gpu_indices: Any = None
    price_per_gpu_hour: int | None = None
    price_per_gpu_hour_usd: str | None
    endpoints: Any = None
    ssh_command: str | None
    vcpus: float | None
    memory_mb: int | None = None
    shm_mb: int | None = None
    cpu_request_millicores: int | None = None
    memory_request_mb: int | None = None
    oom_killed: bool | None = None
    volume: UUID | None = None
    volume_mount_path: str | None = None
    template: UUID | None = None
    created_at: datetime
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    billed_until: datetime | None = None


class PodLogs(ApiModel):
    """`GET /api/v1/pods/{id}/logs` (not a schema component: the view answers it by hand)."""

    schema_name = ""
    pod_id: UUID
    logs: str
    unavailable: str | None = None


class Balance(ApiModel):
    schema_name = "BalanceOutput"
    balance_micros: int
    balance_usd: str
    currency: str = "USD"


class Me(ApiModel):
    schema_name = "MeOutput"
    id: UUID
    email: str
    name: str
    balance_micros: int
    balance_usd: str


class Deposit(ApiModel):
    schema_name = "DepositOutput"
    checkout_url: str
    session_id: str


class ApiKey(ApiModel):
    schema_name = "ApiKeyOutput"
    id: UUID
    name: str
    prefix: str
    scopes: list[str] = []
    expires_at: datetime | None = None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKey):
    """A new key: `key` is the secret, shown this once."""

    schema_name = "ApiKeyCreatedOutput"
    key: str


class Token(ApiModel):
    schema_name = "TokenOutput"
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme's name
    expires_in: int


class ModelTemplate(ApiModel):
    """A model of the catalog (`GET /api/v1/models`)."""

    schema_name = "TemplateOutput"
    slug: str
    name: str
    description: str = ""
    category: str
    capabilities: Any = None
    served_model: str
    image: str
    args: Any = None
    env: Any = None
    port: int
    health_path: str = ""
    min_vram_gb: int | None = None
    recommended_vram_gb: int | None = None
    recommended_gpu: str
    gpu_count: int | None = None


class Deployment(ApiModel):
    schema_name = "DeploymentOutput"
    id: UUID
    name: str
    template: str
    model_name: str
    capabilities: Any = None
    status: str = ""
    status_reason: str = ""
    image: str
    args: Any = None
    env: Any = None
    health_path: str
    gpu_model: str
    gpu_count: int
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_concurrency: int | None = None
    scale_down_delay_s: int | None = None
    max_queue: int | None = None
    queue_timeout_s: int | None = None
    rate_limit_per_minute: int | None = None
    price_cap_per_gpu_hour_usd: str | None
    replica_set: list[Any]
    keys: list[Any]
    created_at: datetime
    ready_at: datetime | None = None
    stopped_at: datetime | None = None


class DeploymentCreated(Deployment):
    """A new deployment: `api_key` (`sk_…`) is its first key, shown this once."""

    schema_name = "DeploymentOutput"
    api_key: str


SCHEMA_MODELS: tuple[type[ApiModel], ...] = (
    Gpu,
    Pod,
    Balance,
    Me,
    Deposit,
    ApiKey,
    ApiKeyCreated,
    Token,
    ModelTemplate,
    Deployment,
)
