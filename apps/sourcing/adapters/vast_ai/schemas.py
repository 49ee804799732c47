"""Vast.ai wire shapes (fact sheet §1.3–1.5), read leniently: unknown fields are ignored and
the fields we rely on are checked."""

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VastOffer(_Lenient):
    id: int
    num_gpus: int
    gpu_name: str
    gpu_ram: float | None = None
    dph_total: float
    reliability: float | None = None
    reliability2: float | None = None
    geolocation: str | None = None
    rentable: bool | None = True
    rented: bool | None = False
    cpu_cores: int | None = None
    is_bid: bool | None = False
    min_bid: float | None = None


class VastOffersAnswer(_Lenient):
    offers: list[VastOffer]


class VastCreateAnswer(_Lenient):
    success: bool = True
    new_contract: int | None = None
    error: str | None = None
    msg: str | None = None


class VastInstance(_Lenient):
    id: int
    label: str | None = None
    actual_status: str | None = None
    intended_status: str | None = None
    cur_state: str | None = None
    status_msg: str | None = None
    num_gpus: int | None = None
    gpu_name: str | None = None
    gpu_ram: float | None = None
    dph_total: float | None = None
    public_ipaddr: str | None = None
    ssh_port: int | None = None
    ports: dict[str, Any] | None = None
    is_bid: bool | None = None
    image_runtype: str | None = None

    @field_validator("public_ipaddr")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() if isinstance(value, str) else value


class VastLogsAnswer(_Lenient):
    success: bool = True
    result_url: str | None = None


class VastInstanceList(_Lenient):
    instances: list[VastInstance]
    next_token: str | None = None
