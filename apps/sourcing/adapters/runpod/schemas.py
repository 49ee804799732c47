"""RunPod wire shapes: GraphQL catalogue and create results (fact sheet §2.2–2.3), REST v2
pods (§2.4)."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class LowestPrice(_Lenient):
    minimumBidPrice: float | None = None  # noqa: N815 - wire names
    uninterruptablePrice: float | None = None  # noqa: N815
    stockStatus: str | None = None  # noqa: N815


class GpuType(_Lenient):
    id: str
    displayName: str | None = None  # noqa: N815
    memoryInGb: int | None = None  # noqa: N815
    maxGpuCount: int | None = None  # noqa: N815
    secureCloud: bool | None = None  # noqa: N815
    communityCloud: bool | None = None  # noqa: N815
    securePrice: float | None = None  # noqa: N815
    communityPrice: float | None = None  # noqa: N815
    secureSpotPrice: float | None = None  # noqa: N815
    communitySpotPrice: float | None = None  # noqa: N815
    lowestPrice: LowestPrice | None = None  # noqa: N815


class CreatedPod(_Lenient):
    id: str
    desiredStatus: str | None = None  # noqa: N815
    imageName: str | None = None  # noqa: N815
    machineId: str | None = None  # noqa: N815


class V2Gpu(_Lenient):
    id: str | None = None
    count: int | None = None


class V2Pod(_Lenient):
    id: str
    name: str | None = None
    status: str | None = None
    gpu: V2Gpu | None = None
    cost: float | None = None
    ssh: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None


class V2PodList(_Lenient):
    pods: list[V2Pod]
    pagination: dict[str, Any] | None = None
