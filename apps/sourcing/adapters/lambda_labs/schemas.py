"""Lambda Cloud wire shapes (fact sheet §3.3–3.5): everything inside a `data` envelope."""

from pydantic import BaseModel, ConfigDict


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Specs(_Lenient):
    gpus: int = 0
    vcpus: int | None = None
    memory_gib: int | None = None


class InstanceType(_Lenient):
    name: str
    description: str
    gpu_description: str | None = None
    price_cents_per_hour: int
    specs: Specs


class Region(_Lenient):
    name: str
    description: str | None = None


class TypeAvailability(_Lenient):
    instance_type: InstanceType
    regions_with_capacity_available: list[Region]


class LambdaInstance(_Lenient):
    id: str
    name: str | None = None
    ip: str | None = None
    status: str
    region: Region | None = None
    instance_type: InstanceType | None = None


class LaunchAnswer(_Lenient):
    instance_ids: list[str]
